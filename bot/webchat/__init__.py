"""The webchat channel: a versioned JSON protocol over WebSocket, and the embeddable widget."""
