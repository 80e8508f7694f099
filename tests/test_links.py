from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from consumer.links import grafana_links
from consumer.settings import Dashboard

START = datetime(2024, 5, 2, 10, 0, 3, 123456, tzinfo=timezone.utc)
END = datetime(2024, 5, 2, 11, 30, 0, tzinfo=timezone.utc)
DASHBOARDS = (
    Dashboard("kube_burner", "kube-burner-report", "kube-burner-report-ocp-wrapper"),
    Dashboard("cluster", "ocp-performance", "openshift-performance"),
)


def test_one_link_per_dashboard_with_window_in_ms():
    links = grafana_links("https://grafana.example.com/", DASHBOARDS, "perf-412", START, END)
    assert links == {
        "kube_burner": "https://grafana.example.com/d/kube-burner-report/kube-burner-report-ocp-wrapper"
        "?orgId=1&from=1714644003123&to=1714649400000&var-cluster_name=perf-412",
        "cluster": "https://grafana.example.com/d/ocp-performance/openshift-performance"
        "?orgId=1&from=1714644003123&to=1714649400000&var-cluster_name=perf-412",
    }


def test_window_is_widened_to_whole_milliseconds():
    end = START + timedelta(microseconds=1500)
    query = parse_qs(urlsplit(grafana_links("http://g", DASHBOARDS[:1], "c", START, end)["kube_burner"]).query)
    assert query["from"] == [str(int(START.timestamp() * 1000))]  # 1714644003123, rounded down
    assert query["to"] == ["1714644003125"]  # 123.456 ms + 1.5 ms = 124.956 ms, rounded up


def test_other_time_zones_are_converted():
    start = START.astimezone(timezone(timedelta(hours=5, minutes=30)))
    links = grafana_links("http://g", DASHBOARDS[:1], "c", start, END)
    assert "from=1714644003123&" in links["kube_burner"]


def test_cluster_and_path_are_url_encoded():
    cluster = 'we ird&to=0#"x/y'
    dashboards = (Dashboard("d", "u/id?", "sl ug"),)
    url = grafana_links("http://g", dashboards, cluster, START, END)["d"]
    parts = urlsplit(url)
    assert parts.path == "/d/u%2Fid%3F/sl%20ug"
    assert parts.fragment == ""
    query = parse_qs(parts.query)
    assert query["var-cluster_name"] == [cluster]
    assert query["to"] == ["1714649400000"]


def test_no_grafana_no_links():
    assert grafana_links(None, DASHBOARDS, "c", START, END) == {}
    assert grafana_links("", DASHBOARDS, "c", START, END) == {}


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        grafana_links("http://g", DASHBOARDS, "c", START.replace(tzinfo=None), END)
