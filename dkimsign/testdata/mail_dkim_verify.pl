#!/usr/bin/perl
# Verify every DKIM-Signature of a message with Mail::DKIM (Debian
# libmail-dkim-perl) for tollgate's interop tests, with DNS from a JSON
# file {"name": ["txt", ...]} served by Net::DNS::Resolver::Mock, never the
# network.
#
#   mail_dkim_verify.pl DNS.json < message
#       prints [{"d": ..., "s": ..., "a": ..., "result": "pass|fail|invalid|...", "detail": ...}, ...]
use strict;
use warnings;
use JSON::PP;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver::Mock;

my ($dnsfile) = @ARGV;
open my $fh, '<', $dnsfile or die "$dnsfile: $!";
my $records = decode_json( do { local $/; <$fh> } );
close $fh;
my $zone = '';
for my $name ( sort keys %$records ) {
    for my $txt ( @{ $records->{$name} } ) {
        my @parts = unpack '(A255)*', $txt;
        $zone .= "$name. 300 IN TXT " . join( ' ', map { qq("$_") } @parts ) . "\n";
    }
}
my $resolver = Net::DNS::Resolver::Mock->new();
$resolver->zonefile_parse($zone);
Mail::DKIM::DNS::resolver($resolver);

binmode STDIN;
my $msg = do { local $/; <STDIN> };
$msg =~ s/\015?\012/\015\012/g;
my $v = Mail::DKIM::Verifier->new();
$v->PRINT($msg);
$v->CLOSE;
my @out;
for my $sig ( $v->signatures ) {
    push @out, { d => $sig->domain, s => $sig->selector, a => $sig->algorithm,
        result => $sig->result, detail => ( $sig->result_detail // '' ) };
}
print encode_json( \@out ), "\n";
