"""The ML registry plugin inside the real Airflow api-server app (airflow.api_fastapi.app's
create_app, the app `airflow api-server` serves, with the provider's plugin loaded as Airflow loads
it) and the simple auth manager: who may read, who may act, and what each page and action does.
Users: `reader` (viewer role: may read assets) and `editor` (op role: may edit them)."""

from __future__ import annotations

import html
import json
import re

import pytest

from airflow_mlcrit.core.artifacts import open_store
from tests.helpers.airflow_app import api_app
from tests.helpers.registry import FIRST, LENIENT, STRICT, add_adapter_version, add_dataset_version
from tests.helpers.services import require_program

PAGES = [
    "/mlcrit/",
    "/mlcrit/a/adapter/clf",
    "/mlcrit/e/adapter/clf",
    "/mlcrit/e/dataset/msgs",
    "/mlcrit/report/evaluation/clf/1",
]
ACTIONS = ["/mlcrit/a/adapter/clf/rollback", "/mlcrit/a/adapter/clf/promote"]


@pytest.fixture(scope="module")
def site(airflow_db, tmp_path_factory):
    """The api-server app over a store holding dataset/msgs v1-v2 and adapter/clf v1 (blessed,
    first), v2 (blessed against v1), v3 (stopped on state=NE); production: v1, then v2."""

    from airflow_mlcrit.core.gating import promote

    root = tmp_path_factory.mktemp("registry")
    work = root / "work"
    work.mkdir()
    store = open_store(root / "store")
    add_dataset_version(store, work, 20, 20, "PASSED")
    add_dataset_version(store, work, 30, 10, "FAILED")
    add_adapter_version(store, work, 16, baseline=None, base_right=0, gate=FIRST)
    promote(store, "adapter/clf@v1", "production", reason="blessed: first", actor="pipeline", create=True)
    add_adapter_version(store, work, 17, baseline=1, base_right=16, gate=LENIENT)
    promote(store, "adapter/clf@v2", "production", reason="blessed: non-inferior", actor="pipeline")
    add_adapter_version(store, work, 8, baseline=2, base_right=17, gate=STRICT)
    with api_app({"reader": "viewer", "editor": "op"}, AIRFLOW__MLCRIT__ARTIFACT_ROOT=str(root / "store")) as app:
        client, tokens = app
        yield client, store, tokens, root


def _as(tokens, name: str) -> dict:
    return {"Authorization": f"Bearer {tokens[name]}"}


def test_without_a_token_every_page_and_action_is_refused(site):
    client, store, _, _ = site
    for path in PAGES:
        assert client.get(path).status_code in (401, 403), path
        assert client.get(path, headers={"Authorization": "Bearer forged.jwt.token"}).status_code in (401, 403), path
    for path in ACTIONS:
        r = client.post(
            path, data={"alias": "production", "to_version": "1", "version": "1", "reason": "x", "token": "x"}
        )
        assert r.status_code in (401, 403), path
    assert store.alias_version("adapter/clf", "production") == 2


def test_a_reader_sees_the_pages_and_may_not_act(site):
    client, store, tokens, root = site
    for path in PAGES:
        r = client.get(path, headers=_as(tokens, "reader"))
        assert r.status_code == 200, (path, r.text[:500])
        assert str(root) not in r.text  # no page shows where the store is
    index = client.get("/mlcrit/", headers=_as(tokens, "reader")).text
    assert 'href="/mlcrit/a/adapter/clf"' in index and "production: v2" in index
    # search: every term matches the kind/name or an alias
    found = client.get("/mlcrit/?q=production", headers=_as(tokens, "reader")).text
    assert re.findall(r'href="/mlcrit/a/(\w+/\w+)"', found) == ["adapter/clf"]
    assert "1 artifact matching" in found
    assert "0 artifacts matching" in client.get("/mlcrit/?q=dataset+production", headers=_as(tokens, "reader")).text
    page = client.get("/mlcrit/a/adapter/clf", headers=_as(tokens, "reader")).text
    assert "Governed actions" not in page and "<form" not in page  # no action offered
    assert [m for m in re.findall(r'<tr id="v(\d+)">', page)] == ["3", "2", "1"]
    moves = page[page.index('<table class="moves">') :]
    assert moves.count("<tr>") == 3 and "blessed: non-inferior" in moves and "BLESSED" in moves
    for path in ACTIONS:
        r = client.post(
            path,
            headers=_as(tokens, "reader"),
            data={"alias": "production", "to_version": "1", "version": "1", "reason": "x", "token": "x"},
        )
        assert r.status_code == 403, (path, r.text)
    assert store.alias_version("adapter/clf", "production") == 2


def test_the_evolution_pages_chart_every_slice_with_bands_and_the_gate_s_stops(site):
    """By default each point is the version's paired difference from the baseline it was judged
    against on the same golden set; the newest verdict and where it stopped come first, then the
    charts, worst slice first. The values view says each point is on its own evaluation's data."""
    client, _, tokens, _ = site
    page = client.get("/mlcrit/e/adapter/clf", headers=_as(tokens, "reader")).text
    verdict = page[page.index('id="verdict">') + len('id="verdict">') :].split("</div>")[0]
    verdict = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", verdict)).strip()
    # CA and overall too: non-inferiority within 0.05 on 20 and 40 rows is more than they can show
    assert (
        verdict == "v3: NOT_BLESSED against adapter/clf@v2 · stopped on overall, state=CA, state=NE · blessing/clf@v3"
    )
    assert page.index('id="verdict"') < page.index('class="charts"')
    boxes = re.findall(r'data-metric="([^"]+)" data-slice="([^"]+)"', page)
    assert boxes == [("accuracy", "state=NE"), ("accuracy", "overall"), ("accuracy", "state=CA")]
    ne = page[page.index('data-slice="state=NE"') :].split("</svg>")[0]
    assert "accuracy - baseline · state=NE" in ne and ne.count('class="zero"') == 1
    assert ne.count('class="band"') == 1 and ne.count('class="prod"') == 1 and ne.count('class="stop"') == 1
    assert "v2 - v1: 0.0500" in ne and "v3 - v2: -0.4500" in ne and "stopped by the gate on this slice" in ne
    # the first model was judged against nothing: a gap, not a number
    assert [t.split(":")[0] for t in re.findall(r'class="pt"><title>([^<]+)', ne)] == ["v2 - v1", "v3 - v2"]
    values = client.get("/mlcrit/e/adapter/clf?view=values", headers=_as(tokens, "reader")).text
    assert "its own evaluation&#39;s golden set" in values or "its own evaluation's golden set" in values
    ne = values[values.index('data-slice="state=NE"') :].split("</svg>")[0]
    assert ne.count('class="band"') == 1 and ne.count('class="prod"') == 2 and ne.count('class="stop"') == 1
    assert "v3: 0.4000" in ne and "v1: 0.8000" in ne and "each on its own data" in ne
    assert client.get("/mlcrit/e/adapter/clf?view=nonsense", headers=_as(tokens, "reader")).status_code == 404
    data = client.get("/mlcrit/e/dataset/msgs", headers=_as(tokens, "reader")).text
    assert "linf 0.2500" in data and ">FAILED<" in data and ">PASSED<" in data
    # flagged: above the default L-infinity limit (the report records no config of its own)
    assert '<td class="drift-over" title="above the limit 0.1">linf 0.2500 <b class="err">&gt; 0.1</b></td>' in data


def test_the_compare_page_puts_two_versions_on_one_golden_set(site):
    """v3 was judged against v2: the compare link of v3 opens them on that evaluation's data, the
    change with its paired interval, worst first; v1 and v3 were never judged together, and the
    page says that their figures come from different data."""
    client, _, tokens, _ = site
    page = client.get("/mlcrit/a/adapter/clf", headers=_as(tokens, "reader")).text
    assert 'href="/mlcrit/c/adapter/clf?a=2&amp;b=3" title="with v2">compare</a>' in page
    cmp = client.get("/mlcrit/c/adapter/clf?a=2&b=3", headers=_as(tokens, "reader")).text
    assert "Both on one golden set" in cmp and "evaluation/clf@v3" in cmp
    rows = re.findall(r'<tr data-slice="([^"]+)" data-metric="accuracy">(.*?)</tr>', cmp, re.S)
    assert [s for s, _ in rows] == ["state=NE", "overall", "state=CA"]  # worst change first
    ne = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1], re.S)]
    assert ne[:5] == ["state=NE", "20", "accuracy", "0.8500", "0.4000"] and ne[5].startswith("-0.4500 [-0.")
    apart = client.get("/mlcrit/c/adapter/clf?a=1&b=3", headers=_as(tokens, "reader")).text
    assert "No evaluation judged one against the other" in apart and "on its own data" in apart


def test_an_editor_rolls_back_through_the_promotion_rules_and_the_history_names_them(site):
    client, store, tokens, _ = site
    client.cookies.set("_token", tokens["editor"])  # as a browser holds it after logging in
    try:
        page = client.get("/mlcrit/a/adapter/clf").text
        [token] = set(re.findall(r'name="token" value="([0-9a-f]{64})"', page))
        assert re.findall(r'<option value="(\d+)">v\d+</option>', page.split("Roll back")[1]) == [
            "2",
            "1",
        ]  # the blessed ones
        form = {"alias": "production", "to_version": "1", "reason": "phone regression confirmed", "token": token}
        refused = [
            (client.post(ACTIONS[0], data=form | {"token": "0" * 64}), 403, "the form's token does not match"),
            (client.post(ACTIONS[0], data=form | {"reason": "  "}), 400, "a reason is required"),
            (client.post(ACTIONS[0], data=form, headers={"Origin": "https://evil.example"}), 403, "another origin"),
            (client.post(ACTIONS[0], data=form, headers={"Sec-Fetch-Site": "cross-site"}), 403, "cross-site"),
            (client.post(ACTIONS[0], data=form | {"to_version": "3"}), 400, "adapter/clf@v3 has no BLESSED blessing"),
            (
                client.post(ACTIONS[1], data=form | {"version": "3"}),
                400,
                "no BLESSED blessing exists for adapter/clf@v3",
            ),
        ]
        for r, status, text in refused:  # pages that say why, in words
            assert (r.status_code, text in html.unescape(r.text)) == (status, True), r.text[:800]
        assert store.alias_version("adapter/clf", "production") == 2
        # a typo'd alias (a crafted form: the page offers only the aliases that exist) is refused
        # on a page that says why and links back
        typo = client.post(ACTIONS[1], data=form | {"version": "2", "alias": "prodution"}, headers={"Referer": ""})
        assert typo.status_code == 400 and "<h1>Refused</h1>" in typo.text, typo.text[:800]
        assert "unknown alias &#39;prodution&#39; of adapter/clf; known: production." in typo.text
        assert 'id="back" href="/mlcrit/a/adapter/clf"' in typo.text.replace(
            'href="/mlcrit/a/adapter/clf" id="back"', 'id="back" href="/mlcrit/a/adapter/clf"'
        )
        assert store.alias_names("adapter/clf") == ["production"]
        assert (
            re.findall(r'<select name="alias">(.*?)</select>', page)[0]
            == '<option value="production" selected>production</option>'
        )
        r = client.post(ACTIONS[0], data=form, headers={"Origin": "http://airflow.test"}, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/mlcrit/a/adapter/clf?moved=production")
        done = client.get(r.headers["location"]).text
        # the rollback recorded no blessing: the row shows the one its target holds, and says so
        rolled = html.unescape(done.split('<table class="moves">')[1].split("</table>")[0].split("<tr>")[-1])
        assert "phone regression confirmed" in rolled and "BLESSED" in rolled and "blessing/clf@v1" in rolled
        assert "(the target's; the move recorded none)" in rolled
        assert re.sub(r"<[^>]+>", "", done.split('id="done">')[1].split("</div>")[0]) == (
            "Done: production now points to v1, moved by editor: phone regression confirmed"
        )
    finally:
        client.cookies.clear()
    move = store.alias_history("adapter/clf", "production")[-1]
    assert (move.from_version, move.to_version, move.actor, move.reason, move.forced) == (
        2,
        1,
        "editor",
        "phone regression confirmed",
        False,
    )
    assert move.extra["via"] == "ML registry UI"


def test_a_report_is_served_from_the_store_and_a_tampered_one_is_refused(site):
    client, store, tokens, root = site
    r = client.get("/mlcrit/report/evaluation/clf/2", headers=_as(tokens, "reader"))
    assert r.status_code == 200 and r.text == store.read_bytes("evaluation/clf@v2", "report.html").decode()
    assert r.headers["content-security-policy"].startswith("sandbox;")
    stored = root / "store" / "evaluation" / "clf" / "v000003" / "report.html"  # the local store's layout
    stored.write_text(stored.read_text().replace("Evaluation", "Forged evaluation"))
    r = client.get("/mlcrit/report/evaluation/clf/3", headers=_as(tokens, "reader"))
    assert (
        r.status_code == 500
        and "<h1>The store failed an integrity check</h1>" in r.text
        and 'id="error-class">ArtifactIntegrityError<' in r.text
        and "Forged" not in r.text
    )
    assert client.get("/mlcrit/report/adapter/clf/1", headers=_as(tokens, "reader")).status_code == 404


def test_the_task_instance_and_dag_run_views_show_what_a_real_run_committed(site, tmp_path):
    """A dag.test() run of evaluate -> gate -> promote (a tabular model judged from prediction
    columns): its task instance's "Evaluation" view and its DAG run's "Artifacts" view."""
    from tests.airflow.conftest import demand_models, run_dag
    from tests.helpers.airflow_app import serve
    from tests.helpers.browser import logged_in_page

    client, store, tokens, _ = site
    demand_models(store, tmp_path, 300)
    evaluate = {"task": "regression", "label_column": "demand", "prediction_column": "pred_v2"}
    evaluate |= {"baseline_prediction_column": "pred_v1", "slices": ["region"], "replicates": 100}
    gate = {"thresholds": [{"metric": "mae", "change": "superiority", "margin": 2.0, "slices": "all"}]}
    dr = run_dag("test_mlcrit_evaluate_tabular", {"evaluate": evaluate, "gate": gate})
    assert dr.state == "success"
    [ev] = [f"evaluation/demand@v{v}" for v in store.versions("evaluation/demand")]
    page = client.get(f"/mlcrit/ti/{dr.dag_id}/{dr.run_id}/evaluate", headers=_as(tokens, "reader")).text
    assert f">{ev}</a>" in page and "region=NE" in page
    mae = json.loads(store.read_bytes(ev, "evaluation.json"))["slices"][0]["candidate"]["mae"]
    assert f"{mae['value']:.4f} [{mae['low']:.4f}, {mae['high']:.4f}]" in page
    # the URL Airflow 3.3 opens for an unmapped task: the placeholder is left in (it was a 422)
    unmapped = client.get(
        f"/mlcrit/ti/{dr.dag_id}/{dr.run_id}/evaluate?map_index={{MAP_INDEX}}", headers=_as(tokens, "reader")
    )
    assert unmapped.status_code == 200 and unmapped.text == page
    gate_page = client.get(f"/mlcrit/ti/{dr.dag_id}/{dr.run_id}/gate", headers=_as(tokens, "reader")).text
    assert '<span class="BLESSED">BLESSED</span>' in gate_page
    run = client.get(f"/mlcrit/run/{dr.dag_id}/{dr.run_id}", headers=_as(tokens, "reader")).text
    listed = re.findall(
        r'<tr class="(\w+)"><td>(\w+)</td>\s*<td>[^<]+</td>\s*<td><a href="/mlcrit/a/[^"]+">([^<]+)</a>', run
    )
    # what the evaluate task read (its candidate, the baseline, the golden set), then what it wrote
    assert [(role, ref) for role, task, ref in listed if task == "evaluate"] == [
        ("read", "dataset/demand-eval@v1"),
        ("read", "model/demand@v1"),
        ("read", "model/demand@v2"),
        ("wrote", ev),
    ]
    assert ("wrote", "gate", "blessing/demand@v1") in listed
    empty = client.get(f"/mlcrit/ti/{dr.dag_id}/no-such-run/evaluate", headers=_as(tokens, "reader")).text
    assert "has committed no artifact" in empty
    assert client.get(f"/mlcrit/run/{dr.dag_id}/{dr.run_id}").status_code in (401, 403)
    # as a person sees it: Chromium in Airflow's own UI, the task's "Evaluation" tab clicked
    mapped = run_dag("test_mlcrit_evaluate_mapped", {})
    assert mapped.state == "success"
    refs = {i: _xcom_ref(mapped, "evaluate", i) for i in (0, 1)}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with serve(client.app) as url, logged_in_page(url, tokens["reader"]) as browser:
        browser.goto(f"{url}/dags/{dr.dag_id}/runs/{dr.run_id}/tasks/gate")
        browser.get_by_role("tab", name="Evaluation").or_(browser.get_by_role("link", name="Evaluation")).first.click()
        frame = browser.frame_locator("iframe")
        assert frame.locator("span.BLESSED").first.inner_text() == "BLESSED"  # the gate's checks, rendered
        browser.screenshot(path=shots / "evaluation-tab-unmapped.png")
        browser.goto(f"{url}/dags/{mapped.dag_id}/runs/{mapped.run_id}/tasks/evaluate/mapped/1")
        browser.get_by_role("tab", name="Evaluation").or_(browser.get_by_role("link", name="Evaluation")).first.click()
        shown = browser.frame_locator("iframe").locator("body").inner_text()
        assert refs[1] in shown and refs[0] not in shown, shown  # map index 1's evaluation, not 0's
        browser.screenshot(path=shots / "evaluation-tab-mapped.png")
        # from Airflow's nav entry to the artifact page: times in the timezone Airflow's selector chose
        browser.evaluate("localStorage.setItem('timezone', JSON.stringify('Asia/Tokyo'))")
        browser.goto(f"{url}/")
        browser.get_by_role("link", name="ML registry").first.click()
        browser.frame_locator("iframe").locator('a[href$="/a/model/demand"]').first.click()
        created = browser.frame_locator("iframe").locator("tr#v2 time")
        iso = created.get_attribute("datetime")
        assert created.inner_text().endswith("GMT+9") and created.inner_text() != iso, (created.inner_text(), iso)
        browser.screenshot(path=shots / "artifact-in-airflow.png")
        # the lineage graph fits the page, zooms with the wheel, pans by dragging
        require_program("dot", "graphviz")
        browser.goto(f"{url}/mlcrit/l/model/demand?at=v2")
        graph = browser.locator(".graph svg")
        width = float(graph.get_attribute("viewBox").split()[2])
        assert graph.evaluate("e => e.getBoundingClientRect().width") <= 1440
        graph.hover()
        browser.mouse.wheel(0, -300)
        browser.wait_for_function(
            "w => parseFloat(document.querySelector('.graph svg').getAttribute('viewBox').split(' ')[2]) < w", arg=width
        )
        x = float(graph.get_attribute("viewBox").split()[0])
        corner = graph.bounding_box()  # drag from an empty corner (a drag on a node opens its page)
        browser.mouse.move(corner["x"] + 4, corner["y"] + 4)
        browser.mouse.down()
        browser.mouse.move(corner["x"] + 104, corner["y"] + 84, steps=5)
        browser.mouse.up()
        assert float(graph.get_attribute("viewBox").split()[0]) != x  # moved
        browser.screenshot(path=shots / "lineage-zoomed.png")
        # Airflow's own dark theme (what its toggle stores): the framed page turns dark with it
        browser.evaluate("localStorage.setItem('theme', 'dark')")
        browser.goto(f"{url}/dags/{dr.dag_id}/runs/{dr.run_id}/tasks/gate")
        browser.get_by_role("tab", name="Evaluation").or_(browser.get_by_role("link", name="Evaluation")).first.click()
        body = browser.frame_locator("iframe").locator("body")
        assert body.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(26, 32, 44)"
        browser.screenshot(path=shots / "evaluation-tab-dark.png")
    assert sorted(p.name for p in shots.iterdir() if p.stat().st_size > 5_000) == [
        "artifact-in-airflow.png",
        "evaluation-tab-dark.png",
        "evaluation-tab-mapped.png",
        "evaluation-tab-unmapped.png",
        "lineage-zoomed.png",
    ]


def test_on_s3_the_report_opens_through_the_plugin_and_no_page_shows_the_endpoint(
    site, moto_server, monkeypatch, tmp_path
):
    from tests.conftest import make_s3_root

    client, _, tokens, _ = site
    root = make_s3_root(moto_server)
    monkeypatch.setenv("AIRFLOW__MLCRIT__ARTIFACT_ROOT", root)
    monkeypatch.setenv("AIRFLOW__MLCRIT__S3_ENDPOINT_URL", moto_server.endpoint_url)
    store = open_store(root, endpoint_url=moto_server.endpoint_url)
    add_adapter_version(store, tmp_path, 16, baseline=None, base_right=0, gate=FIRST)
    r = client.get("/mlcrit/report/evaluation/clf/1", headers=_as(tokens, "reader"))
    assert r.status_code == 200 and r.text == "<html><body><h1>Evaluation of adapter/clf@v1</h1></body></html>"
    for path in ("/mlcrit/", "/mlcrit/a/adapter/clf", "/mlcrit/e/adapter/clf", "/mlcrit/a/evaluation/clf"):
        page = client.get(path, headers=_as(tokens, "reader")).text
        assert "adapter/clf" in page and moto_server.endpoint_url not in page and root not in page, path
        assert "testing" not in page  # the S3 credentials (tests/conftest.py)


def test_the_lineage_page_draws_both_directions_with_graphviz(site):
    require_program("dot", "graphviz")
    client, _, tokens, _ = site
    page = client.get("/mlcrit/l/adapter/clf?at=v2", headers=_as(tokens, "reader")).text
    svg = page[page.index("<svg") : page.index("</svg>")]
    drawn = set(re.findall(r'<g id="n_([^"]+)" class="node">', svg))
    expected = {"adapter/clf@v2", "evaluation/clf@v2", "blessing/clf@v2", "evaluation/clf@v3", "blessing/clf@v3"}
    assert drawn == {re.sub(r"[^A-Za-z0-9_]", "_", r) for r in expected}
    assert (
        'xlink:href="/mlcrit/a/evaluation/clf#v3"' in svg and svg.count('class="edge"') == 5
    )  # a2->e2, a2->b2, a2->e3 (its baseline), e2->b2, e3->b3
    assert re.findall(r'<li><a href="[^"]+">([^<]+)</a></li>', page) == sorted(expected)
    production = client.get("/mlcrit/l/adapter/clf?at=production", headers=_as(tokens, "reader")).text
    assert "Lineage of adapter/clf@v" in production and "(production)" in production
    assert client.get("/mlcrit/l/adapter/clf?at=v9", headers=_as(tokens, "reader")).status_code in (400, 404)


def test_hostile_text_in_the_store_is_shown_as_text(site, tmp_path):
    """A reason, a producer field and a data value holding markup render escaped (and the pages'
    policy allows no script but the theme's own, by its hash)."""
    import pandas as pd

    from tests.helpers.registry import put_json

    client, store, tokens, _ = site
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    (tmp_path / "m.json").write_text("{}")
    store.put("model/evil", tmp_path / "m.json", producer={"dag_id": attack, "run_id": attack})
    store.move_alias("model/evil@v1", "production", reason=attack, actor=attack, forced=True)
    pd.DataFrame({"note": [attack] * 3 + ["ok"]}).to_parquet(tmp_path / "evil.parquet", index=False)
    data = store.put("dataset/evil", tmp_path / "evil.parquet")
    from airflow_mlcrit.core.validation.statistics import compute_statistics

    stats = compute_statistics({"source": str(tmp_path / "evil.parquet")}).statistics
    work = tmp_path / "work"
    work.mkdir()
    put_json(store, "statistics/evil", work, "statistics.json", stats, parents=[str(data.ref)], metadata={})
    for path in ("/mlcrit/a/model/evil", "/mlcrit/e/model/evil", "/mlcrit/e/dataset/evil", "/mlcrit/"):
        r = client.get(path, headers=_as(tokens, "reader"))
        body = r.text.split("</head>", 1)[1]  # the theme script sits in the head
        assert r.status_code == 200 and "<script" not in body and "<img" not in body, path
        # one script may run: the theme's, by its hash (the markup above is text, not a script)
        [allowed] = re.findall(r"script-src ([^;]+);", r.headers["content-security-policy"])
        assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", allowed), allowed
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
        in client.get("/mlcrit/a/model/evil", headers=_as(tokens, "reader")).text
    )


def test_the_registry_lists_pending_approvals_and_flags_a_malformed_one(site, tmp_path):
    from airflow_mlcrit.core.gating import AliasPolicy, set_policy
    from airflow_mlcrit.core.gating.approval import decide, request_approval

    client, store, tokens, _ = site
    before = client.get("/mlcrit/", headers=_as(tokens, "reader")).text
    policy = AliasPolicy(approvals=1, approvers=("alice", "bob"))
    set_policy(store, "adapter/clf", "staging", policy, reason="four eyes on staging", actor="owner", create=True)
    request = request_approval(store, "adapter/clf@v1", "staging", requested_by="carol")
    page = client.get("/mlcrit/", headers=_as(tokens, "reader")).text
    assert "Pending approvals" not in before and "Pending approvals" in page
    assert "Pending approvals" in client.get("/mlcrit/?q=dataset", headers=_as(tokens, "reader")).text
    row = page[page.index('<table class="approvals">') :].split("</tr>")[1]
    assert all(
        t in row for t in (str(request.ref), "adapter/clf@v1", "staging", "blessing/clf@v1", "carol", "alice, bob")
    )
    # one bad record (a date that is not one) is flagged on its own row; the registry keeps working
    bad = dict(request.metadata, expires_at="not-a-date")
    (tmp_path / "evil.json").write_text(json.dumps(bad))
    store.put("approval/evil", tmp_path / "evil.json", metadata=bad)
    page = client.get("/mlcrit/", headers=_as(tokens, "reader"))
    assert page.status_code == 200
    assert 'approval/evil@v1</td><td colspan="6"><span class="err">malformed, not listed: expires_at is ' in page.text
    run = {"dag_id": "d", "run_id": "r", "task_id": "approve"}
    decide(store, str(request.ref), user="bob", approve=False, reason="not for staging", airflow_run=run)
    page = client.get("/mlcrit/", headers=_as(tokens, "reader")).text
    assert str(request.ref) not in page and "approval/evil@v1" in page


def _xcom_ref(dr, task_id: str, map_index: int) -> str:
    """The artifact reference a (mapped) task instance returned."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dr.run_id, key="return_value", dag_ids=dr.dag_id, task_ids=task_id, map_indexes=map_index
        )
        [row] = session.scalars(query).all()
        return XComModel.deserialize_value(row)["ref"]
