"""The training pool: corrected (and uncorrected) cases collected for fine-tuning (docs/architecture.md §3.4).

    from VQSegCore.pool import Pool
    pool, created = Pool.open_or_create("/data/pools/pilot")
    case = pool.add("ct.nrrd", label="corrected.nii.gz", draft="draft.nii.gz", draft_model="lung/v0003")
    pool.verify().intact            # every hash checked
    pool.export_spec("spec.json")   # → vqseg train --dataset spec.json

One folder per pool; see `layout` for the files. Every change takes an exclusive flock and
publishes a case folder with one rename, so a crash leaves either no case or a complete one.
No patient-identifying text is stored (`privacy`).
"""

from VQSegCore.pool.case_changes import read_case_inputs
from VQSegCore.pool.journal import DEFAULT_LOCK_TIMEOUT_S, PoolLock
from VQSegCore.pool.layout import PoolLayout, pool_folder
from VQSegCore.pool.pool import Pool
from VQSegCore.pool.pool_file import POOL_FORMAT_VERSION, PoolInfo
from VQSegCore.pool.records import LABELLED, UNLABELLED, CaseRecord
from VQSegCore.pool.verify import VerifyReport

__all__ = [
    "Pool",
    "PoolInfo",
    "PoolLayout",
    "PoolLock",
    "CaseRecord",
    "VerifyReport",
    "LABELLED",
    "UNLABELLED",
    "POOL_FORMAT_VERSION",
    "DEFAULT_LOCK_TIMEOUT_S",
    "pool_folder",
    "read_case_inputs",
]
