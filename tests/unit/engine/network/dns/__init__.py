"""Unit tests of the embedded DNS server's pure parts."""
