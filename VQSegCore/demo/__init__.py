"""`vqseg demo`: the whole loop on synthetic chest CT — segment, correct, pool, fine-tune, re-segment."""

from VQSegCore.demo.loop import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
