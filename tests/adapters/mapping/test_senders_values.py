"""Values a user gets from the messages of senders outside the corpus (senders/README.md), where
the maps once gave something else."""

from __future__ import annotations

from adapters.mapping import convert
from tests.adapters.mapping.conftest import message, oru, resources

PID = "PID|1||MC40091^^^HOSP^MR||Ibrahim^Yusuf||19680814|M"
OBR = "OBR|1||MB24-0991-S|29576-6^Bacterial susceptibility panel^LN"


def observation(obx: str) -> dict:
    [found] = resources(convert(oru(PID, OBR, obx)), "Observation")
    return found


def test_an_sn_that_is_no_number_is_kept_as_the_reader_writes_it_without_separators():
    # a trimethoprim/sulfamethoxazole MIC, sent as "2/38" in the number's place
    obx = "OBX|1|SN|18993-6^TMP+SMX [Susceptibility]^LN|1|>^2/38|ug/mL||R|||F"
    assert observation(obx)["valueString"] == ">2/38"


def test_a_v23_pharmacy_order_without_tq1_keeps_its_timing_from_rxe_1():
    rde = message(
        "MSH|^~\\&|PHARMNET|MERCY|HUB|MERCY|20240612120500||RDE^O11|Q1|P|2.3",
        "PID|1||2200411^^^MRN^MR||Oyelaran^Folasade||19650222|F",
        "ORC|NW|40092211^HNAM_ORDERID",
        "RXE|1^BID^^20240612200000^20240619200000|00378-1805-01^metoprolol 25 mg tab^NDC|25||mg",
    )
    [request] = resources(convert(rde), "MedicationRequest")
    timing = request["dosageInstruction"][0]["timing"]
    assert timing["code"]["coding"][0]["code"] == "BID"
    assert timing["repeat"]["boundsPeriod"] == {
        "start": "2024-06-12T20:00:00+00:00",
        "end": "2024-06-19T20:00:00+00:00",
    }
