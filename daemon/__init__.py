"""wa-agentd: WhatsApp text and voice notes answered by Agentforce."""

__version__ = "0.1.0"

# Every upstream request says who it is (daemon/http.py sets it on each pool; the media
# downloads of the channels set it again, for the CDNs that refuse requests without one).
USER_AGENT = f"wa-agentd/{__version__}"
