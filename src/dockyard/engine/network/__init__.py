"""Container networking: the rtnetlink client and network-namespace helpers the bridge driver
is built on (Docker's bridge network: a bridge per network, a veth pair per endpoint)."""
