"""Transports move bytes between a peer and a voice session; one module per transport."""
