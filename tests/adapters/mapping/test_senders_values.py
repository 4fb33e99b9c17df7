"""Values a user gets from the messages of senders outside the corpus (senders/README.md), where
the maps once gave something else."""

from __future__ import annotations

from adapters.mapping import convert
from tests.adapters.mapping.conftest import oru, resources

PID = "PID|1||MC40091^^^HOSP^MR||Ibrahim^Yusuf||19680814|M"
OBR = "OBR|1||MB24-0991-S|29576-6^Bacterial susceptibility panel^LN"


def observation(obx: str) -> dict:
    [found] = resources(convert(oru(PID, OBR, obx)), "Observation")
    return found


def test_an_sn_that_is_no_number_is_kept_as_the_reader_writes_it_without_separators():
    # a trimethoprim/sulfamethoxazole MIC, sent as "2/38" in the number's place
    obx = "OBX|1|SN|18993-6^TMP+SMX [Susceptibility]^LN|1|>^2/38|ug/mL||R|||F"
    assert observation(obx)["valueString"] == ">2/38"
