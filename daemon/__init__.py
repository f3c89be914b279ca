"""wa-agentd: WhatsApp text and voice notes answered by Agentforce."""

__version__ = "0.1.0"
