"""Every real-world sample in the corpus, sent over MLLP: the right ACK and the right stored state."""

from __future__ import annotations

import pytest

from adapters.codecs import hl7v2
from adapters.transports.mllp import MLLPClient
from channels_app.models import Message
from tests import factories
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Files a receiver must refuse as one MLLP message (see the corpus MANIFEST notes).
REFUSED = {
    "batch/oie_fhs_bhs_orm_no_trailers.hl7",  # a batch file, not one message
    "batch/oie_three_siu_no_envelope.hl7",  # three messages in one frame
    "batch/pythonhl7_fhs_bhs_bts_fts_three_messages.hl7",
    "malformed/cdc_bad_encoding_chars_msh2.hl7",  # MSH-2 "&&&&"
    "malformed/nhc_adt_a01_segments_space_separated.hl7",
    "malformed/oie_som_eom_text_markers.hl7",
    "malformed/pythonhl7_batch_missing_msh.hl7",
    "malformed/pythonhl7_bhs_inside_message.hl7",
}
# Message types with no canonical map: answered AR (ERR-3 200, the type named) and stored with
# their error at the map stage.
UNMAPPED = {"ERP^Z99", "ORF", "MFN^M02", "ADT^O01", "ADT^Üi²"}  # PPR^PC1 has a map now


def test_every_corpus_file_gets_the_right_ack_and_state(
    corpus, mllp_port, listener, celery_worker, fhir_sink
):
    channel = factories.channel(mllp_port, dedupe_window_s=0)  # samples reuse control ids
    factories.fhir_destination(channel, fhir_sink.url)
    listener(channel)
    files = sorted(corpus.rglob("*.hl7"))
    assert len(files) >= 50
    acks: dict[str, tuple] = {}
    unmapped = set()
    with MLLPClient("127.0.0.1", mllp_port) as client:
        for path in files:
            name = path.relative_to(corpus).as_posix()
            ack = hl7v2.parse(client.send(path.read_bytes()))
            err = ack.first("ERR")  # ERR-3 from v2.5, ERR-1.4 before
            codes = {ack.get("ERR-3.1"), ack.get("ERR-1.4.1")} if err is not None else set()
            acks[name] = (ack.get("MSA-1"), ack.get("MSA-3"), codes)
            if name not in REFUSED and hl7v2.parse(path.read_bytes()).message_type in UNMAPPED:
                unmapped.add(name)
    assert len(unmapped) >= 5
    for name, (code, text, error) in acks.items():
        if name in REFUSED:
            assert code in ("AR", "AE") and text, (
                f"{name}: expected a NAK with a reason, got {code}"
            )
        elif name in unmapped:
            assert code == "AR" and "200" in error and "no built-in map" in text, (name, text)
        else:
            assert code == "AA", f"{name}: expected AA, got {code} {text}"
    assert Message.objects.count() == len(files)  # refused ones are stored too
    wait_for(
        lambda: not Message.objects.filter(status=Message.Status.RECEIVED).exists(),
        timeout=60,
        what="every accepted message processed",
    )
    for message in Message.objects.exclude(error_stage="parse"):
        if message.message_type in UNMAPPED:
            assert message.status == Message.Status.ERROR and message.error_stage == "map"
            assert (
                "no built-in map" in message.error_detail
                and message.message_type[:3] in message.error_detail
            )
        else:
            assert message.status == Message.Status.PROCESSED, (
                message.message_type,
                message.error_detail,
            )
            assert message.canonical_json["type"] == "transaction"
    refused = Message.objects.filter(error_stage="parse").count()
    assert refused == len(REFUSED)
