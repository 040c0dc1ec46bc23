"""Which labelled pool cases validate a fine-tune: a rule that works from 3 labelled cases up.

    train_cases, held_out = split_for_validation(spec.cases())

With n labelled cases, n // 3 of them (at least 1 from n = 3; none below 3) are held out: they
are never trained on, not even as unlabelled images, and both the parent and the candidate model
are scored on them. Which ones is fixed by a hash of the case's number in the pool (`case-0007-…`
→ 7; the id's random suffix plays no part), so a re-run or a resumed run holds out the same cases,
two pools filled in the same order hold out the same cases (a repeatable demo and benchmark), and
adding new cases moves few of them. Below 3 labelled cases a gate is not possible: the candidate is
kept, not promoted, and the report says why.
"""

from __future__ import annotations

import hashlib

from VQSegCore.dataset_spec import Case
from VQSegCore.pool.layout import case_number

MIN_LABELLED_FOR_GATE = 3


def held_out_count(labelled: int) -> int:
    return 0 if labelled < MIN_LABELLED_FOR_GATE else max(1, labelled // 3)


def split_for_validation(cases: list[Case]) -> tuple[list[Case], list[Case]]:
    """(training cases: labelled and unlabelled, held-out labelled cases)."""
    labelled = [case for case in cases if case.labelled]
    ranked = sorted(labelled, key=_rank_key)
    held = {case.id for case in ranked[: held_out_count(len(labelled))]}
    return [case for case in cases if case.id not in held], [case for case in cases if case.id in held]


def _rank_key(case: Case) -> tuple[str, str]:
    number = case_number(case.id)
    key = case.id if number is None else f"case-{number}"  # ids from outside a pool rank by the whole id
    return hashlib.sha256(key.encode()).hexdigest(), case.id
