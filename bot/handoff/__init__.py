"""Human handoff: durable tickets, skills- and priority-based routing (ACD), agents."""
