#!/usr/bin/perl
# Sign a message with Mail::DKIM (Debian libmail-dkim-perl), for tollgate's
# interoperability tests: the message on stdin, the signed message (the
# DKIM-Signature on top) on stdout, CRLF line ends.
#
#   mail_dkim_sign.pl KEYFILE DOMAIN SELECTOR ALGORITHM METHOD < message
#
# ALGORITHM is rsa-sha256 (or ed25519-sha256 for a Mail::DKIM that has it);
# METHOD is the canonicalization, e.g. relaxed/simple.
use strict;
use warnings;
use Mail::DKIM::Signer;
use Mail::DKIM::TextWrap;

my ($keyfile, $domain, $selector, $algorithm, $method) = @ARGV;
die "usage: $0 KEYFILE DOMAIN SELECTOR ALGORITHM METHOD\n" unless $method;

my $signer = Mail::DKIM::Signer->new(
    Algorithm => $algorithm,
    Method    => $method,
    Domain    => $domain,
    Selector  => $selector,
    KeyFile   => $keyfile,
    Headers   => 'from:to:subject:date:message-id:mime-version:content-type',
);
binmode STDIN;
my $message = do { local $/; <STDIN> };
$message =~ s/\r?\n/\r\n/g;
$signer->PRINT($message);
$signer->CLOSE;
binmode STDOUT;
print $signer->signature->as_string, "\r\n", $message;
