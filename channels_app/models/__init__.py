from channels_app.models.config import Channel, ChannelVersion, Destination
from channels_app.models.replay import ReplayJob
from channels_app.models.samples import ChannelSample
from channels_app.models.traffic import Attempt, DedupeEntry, Delivery, Message

__all__ = [
    "Attempt",
    "Channel",
    "ChannelSample",
    "ChannelVersion",
    "DedupeEntry",
    "Delivery",
    "Destination",
    "Message",
    "ReplayJob",
]
