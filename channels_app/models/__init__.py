from channels_app.models.config import Channel, ChannelVersion, Destination
from channels_app.models.replay import ReplayJob
from channels_app.models.traffic import Attempt, DedupeEntry, Delivery, Message, MessageKey

__all__ = [
    "Attempt",
    "Channel",
    "ChannelVersion",
    "DedupeEntry",
    "Delivery",
    "Destination",
    "Message",
    "MessageKey",
    "ReplayJob",
]
