"""The pipeline reports through one seam, per batch: what went in over MLLP, what was processed,
errored and delivered is counted, with its latency, in the shared statistics."""

from __future__ import annotations

import pytest

from channels_app import events, histogram, stats
from channels_app.models import Delivery, Message
from tests import factories
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def channel_cell(channel_id: int) -> stats.Cell:
    return stats.combined([stats.totals()], keep=lambda scope: scope[0] == channel_id)


def test_every_stage_is_counted_with_its_latency(hub, mllp_port):
    for i in range(3):
        send(mllp_port, factories.adt_a01(f"EV-{i}"))
    send(mllp_port, b"MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z01|EV-BAD|P|2.5.1\rZZZ|1\r")
    wait_for(
        lambda: (
            Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 3
            and Message.objects.filter(status=Message.Status.ERROR).exists()
        ),
        what="three delivered, one in error",
    )
    destination = hub.destinations.get()

    def settled():
        events.flush()
        counts = channel_cell(hub.pk).counts
        return counts[stats.DELIVERED] == 3 and counts[stats.ERROR_PREFIX + "map"] == 1

    wait_for(settled, what="the statistics to count every stage")
    cell = channel_cell(hub.pk)
    assert cell.counts[stats.RECEIVED] == 4
    assert cell.counts[stats.PROCESSED] == 3
    assert cell.counts[stats.ATTEMPT_PREFIX + "success"] == 3
    for metric in (stats.TOTAL, stats.PROCESS, stats.DELIVER):
        assert histogram.total(cell.histograms[metric]) == 3, metric
    by_destination = stats.totals()[hub.pk, destination.pk]
    assert by_destination.counts[stats.DELIVERED] == 3
    assert histogram.percentile(cell.histograms[stats.TOTAL], 0.95) > 0


def test_a_failed_delivery_is_counted_against_its_destination(hub, mllp_port, fhir_sink):
    destination = hub.destinations.get()
    destination.max_attempts = 1
    destination.save()
    fhir_sink.fail_next(1, status=400)  # a permanent refusal
    send(mllp_port, factories.adt_a01("EV-FAIL"))
    wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.FAILED).exists(),
        what="delivery failed",
    )

    def counted():
        events.flush()
        return stats.totals().get((hub.pk, destination.pk), stats.Cell()).counts[stats.FAILED]

    assert wait_for(counted, what="the failure counted") == 1
    counts = stats.totals()[hub.pk, destination.pk].counts
    assert counts[stats.ATTEMPT_PREFIX + "permanent"] == 1
    assert counts[stats.ERROR_PREFIX + "deliver"] == 1
