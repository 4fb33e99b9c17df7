from channels_app.models.alerts import Alert, AlertNotice, AlertRule
from channels_app.models.config import Channel, ChannelDraft, ChannelVersion, Destination
from channels_app.models.heartbeat import SourceHeartbeat
from channels_app.models.processes import ProcessHeartbeat
from channels_app.models.replay import ReplayItem, ReplayJob
from channels_app.models.samples import ChannelSample
from channels_app.models.stats import StatMinute
from channels_app.models.traffic import Attempt, DedupeEntry, Delivery, Message, MessageKey

__all__ = [
    "Alert",
    "AlertNotice",
    "AlertRule",
    "Attempt",
    "Channel",
    "ChannelDraft",
    "ChannelSample",
    "ChannelVersion",
    "DedupeEntry",
    "Delivery",
    "Destination",
    "Message",
    "MessageKey",
    "ProcessHeartbeat",
    "ReplayItem",
    "ReplayJob",
    "SourceHeartbeat",
    "StatMinute",
]
