"""How long a hostile template takes to be refused, against rendering the demo's real prompt for
every row of a week's golden set (2,400 rows), measured in the same process. The refusals are
the bounds of core/preprocessing/templates.py at work; the issue's goal is each within 2 s and
the process under 300 MB (tests/core/prompting/test_prompting.py checks the memory and the
ConfigError, never a time).

.venv/bin/python dev/bench/bench_templates.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HOSTILE = {
    "nested loops over ljust(100000)": "{% for x in text.ljust(100000) %}{% for y in text.ljust(100000) %}"
    "{% endfor %}{% endfor %}",
    "nested range(100000)": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "lipsum(1000000)": "{{ lipsum(1000000) }}",
    '"%999999999d"|format(1)': '{{ "%999999999d"|format(1) }}{{ text }}',
    '"%999999999d" % 1': '{{ "%999999999d" % 1 }}{{ text }}',
    '"{:999999999}".format(1)': '{{ "{:999999999}".format(1) }}{{ text }}',
    "text.ljust(10**9)|length": "{{ text.ljust(10**9)|length }}",
    "text * 10**9": "{{ text * 10 ** 9 }}",
    "output over 1,000,000 chars": "{% for i in range(99999) %}{{ text * 20 }}{% endfor %}",
}


def main() -> None:
    from airflow_mlcrit.core.prompting.prompt import PromptSpec
    from airflow_mlcrit.exceptions import ConfigError

    real = PromptSpec(
        template="{{ text }}",
        variables=["text"],
        verbalizers={"neg": "unhappy", "pos": "happy"},
        label_template="The customer is {{ label }}.",
    )
    rows = [{"text": f"my order {i} arrived late and the agent was rude"} for i in range(2400)]
    start = time.perf_counter()
    for row in rows:
        real.render(row)
    baseline = time.perf_counter() - start
    print(f"baseline: the demo prompt rendered for 2,400 rows: {baseline * 1000:.1f} ms")
    print(f"{'hostile template':<36} {'refused in':>10} {'ratio':>7}  outcome")
    for name, template in HOSTILE.items():
        start = time.perf_counter()
        try:
            PromptSpec(template=template, variables=["text"], name="evil").render({"text": "x"})
            outcome = "RENDERED"
        except ConfigError as exc:
            outcome = str(exc).split(": ", 1)[-1][:70]
        took = time.perf_counter() - start
        print(f"{name:<36} {took * 1000:>8.1f} ms {took / baseline:>6.2f}x  {outcome}")
    with open("/proc/self/status") as status:  # VmHWM: ru_maxrss would keep a forking parent's across exec
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(f"peak RSS of this process: {peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()
