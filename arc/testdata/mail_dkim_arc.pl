#!/usr/bin/perl
# Drive Mail::DKIM's ARC code (Debian libmail-dkim-perl) for tollgate's
# interop tests, with DNS from a JSON file {"name": ["txt", ...]} served by
# Net::DNS::Resolver::Mock (libnet-dns-resolver-mock-perl), never the network.
#
#   mail_dkim_arc.pl verify DNS.json < message
#       prints {"result": "pass|fail|none", "detail": "..."}
#   mail_dkim_arc.pl seal DNS.json KEY.pem DOMAIN SELECTOR SRVID [CV] < message
#       acts as one ARC hop: verifies (or takes the verdict CV, for a hop
#       that changed the message after verifying it), adds its
#       Authentication-Results (arc=<result>) on top, seals, prints the
#       message with the new set.
use strict;
use warnings;
use JSON::PP;
use Mail::DKIM::ARC::Signer;
use Mail::DKIM::ARC::Verifier;
use Net::DNS::Resolver::Mock;

my ( $mode, $dnsfile, @args ) = @ARGV;

open my $fh, '<', $dnsfile or die "$dnsfile: $!";
my $records = decode_json( do { local $/; <$fh> } );
close $fh;
my $zone = '';
for my $name ( sort keys %$records ) {
    for my $txt ( @{ $records->{$name} } ) {
        # character-strings of at most 255 bytes
        my @parts = unpack '(A255)*', $txt;
        $zone .= "$name. 300 IN TXT " . join( ' ', map { qq("$_") } @parts ) . "\n";
    }
}
my $resolver = Net::DNS::Resolver::Mock->new();
$resolver->zonefile_parse($zone);
Mail::DKIM::DNS::resolver($resolver);

binmode STDIN;
binmode STDOUT;
my $msg = do { local $/; <STDIN> };
$msg =~ s/\015?\012/\015\012/g;

sub arc_verify {
    my ($m) = @_;
    my $arc = Mail::DKIM::ARC::Verifier->new( Strict => 1 );
    $arc->PRINT($m);
    $arc->CLOSE;
    return ( $arc->result, $arc->result_detail );
}

if ( $mode eq 'verify' ) {
    my ( $result, $detail ) = arc_verify($msg);
    print encode_json( { result => $result, detail => $detail } ), "\n";
    exit 0;
}
die "unknown mode $mode\n" unless $mode eq 'seal';

my ( $keyfile, $domain, $selector, $srvid, $cv ) = @args;
my ($result) = defined $cv ? ($cv) : arc_verify($msg);
$result = 'fail' unless $result =~ /^(pass|fail|none)$/;
$msg = "Authentication-Results: $srvid; arc=$result\015\012" . $msg;
my $signer = Mail::DKIM::ARC::Signer->new(
    Algorithm => 'rsa-sha256',
    Chain     => 'ar',
    SrvId     => $srvid,
    Domain    => $domain,
    Selector  => $selector,
    KeyFile   => $keyfile,
    Timestamp => time(),
);
$signer->PRINT($msg);
$signer->CLOSE;
die 'Mail::DKIM did not seal: ' . $signer->result . ' ' . ( $signer->{details} || '' ) . "\n"
  unless $signer->result eq 'sealed';
print $signer->as_string, $msg;
