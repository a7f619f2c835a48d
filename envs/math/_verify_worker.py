"""The math-verify worker process: reads JSON requests on stdin, answers one JSON line each on stdout.

Run by ``envs.math.verify.Verifier`` as ``python _verify_worker.py SOFT_TIMEOUT_S``; it imports nothing
from chordgym, so it works whatever the parent's ``sys.path``. Here math-verify runs in the main thread of
its own process, where its ``signal.alarm`` timeouts work: a slow sympy step that returns to Python is cut
after ``SOFT_TIMEOUT_S`` and reported as ``timed_out`` while the worker lives on. A hang in C (a huge
integer power) ignores signals; the parent kills the process after its own hard deadline.

Request: ``{"gold": str, "answer": str}`` (the contents of the two boxes). Reply:
``{"correct": bool, "timed_out": bool, "error": str | null}``.
"""

import json
import os
import sys


def main() -> None:
    soft = max(1, int(float(sys.argv[1]))) if len(sys.argv) > 1 else 1
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def parse_box(content: str) -> list:
        return parse("\\boxed{" + content + "}", extraction_config=configs, extraction_mode="first_match",
                     parsing_timeout=soft, raise_on_error=True)

    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        reply = {"correct": False, "timed_out": False, "error": None}
        try:
            request = json.loads(line)
            gold = parse_box(request["gold"])
            answer = parse_box(request["answer"])
            if not gold:
                reply["error"] = "gold answer could not be parsed"
            elif not answer:
                reply["error"] = "answer could not be parsed"
            else:
                reply["correct"] = bool(verify(gold, answer, timeout_seconds=soft, raise_on_error=True))
        except TimeoutException:
            reply["timed_out"] = True
            reply["error"] = f"math-verify timed out after {soft} s"
        except Exception as e:  # noqa: BLE001 - any failure of the checker is a wrong answer, not a crash
            reply["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        proto.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
