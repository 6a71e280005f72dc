#!/usr/bin/perl
# Healthy when both OpenDKIM instances (RSA keys on 8891, Ed25519 keys on 8892) answer a
# milter option negotiation: the exchange Postfix starts every connection with
# (SMFIC_OPTNEG, milter protocol version 6).
use strict;
use warnings;
use IO::Socket::INET;

sub read_exactly {
    my ($socket, $wanted) = @_;
    my $data = '';
    while (length $data < $wanted) {
        my $got = sysread($socket, $data, $wanted - length $data, length $data);
        die "connection closed during negotiation\n" unless $got;
    }
    return $data;
}

sub negotiate {
    my ($port) = @_;
    my $socket = IO::Socket::INET->new(
        PeerAddr => 'opendkim-milter', PeerPort => $port, Proto => 'tcp', Timeout => 5,
    ) or die "cannot connect: $!\n";
    local $SIG{ALRM} = sub { die "no answer to option negotiation\n" };
    alarm 5;
    # 'O', version 6, every action, no protocol steps skipped.
    my $body = 'O' . pack('NNN', 6, 0x1FF, 0);
    print {$socket} pack('N', length $body) . $body;
    my $length = unpack('N', read_exactly($socket, 4));
    my $reply = read_exactly($socket, $length);
    alarm 0;
    my ($command, $version) = unpack('a1 N', $reply);
    die sprintf("unexpected reply %s\n", unpack('H*', $reply)) if $command ne 'O' || !$version;
    # Tell the filter this connection is over (SMFIC_QUIT).
    print {$socket} pack('N', 1) . 'Q';
    close $socket;
    return $version;
}

my $healthy = 1;
for my $port (8891, 8892) {
    my $version = eval { negotiate($port) };
    if (defined $version) {
        print "milter on $port: OpenDKIM negotiated protocol version $version\n";
    } else {
        print "milter on $port: $@";
        $healthy = 0;
    }
}
exit($healthy ? 0 : 1);
