"""Certificate authority and TLS contexts for servers and clients."""
