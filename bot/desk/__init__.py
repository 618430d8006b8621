"""The agent and supervisor desk: login, desk API, live WebSocket push, pages."""
