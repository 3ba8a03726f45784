import pandas as pd
import pytest

from bench import BenchError
from bench.storage.results import check_writable, read_run, write_cell, write_json


def test_cells_round_trip_and_unfinished_cells_ignored(tmp_path):
    write_json(tmp_path / "meta.json", {"run_id": "r1"})
    header = {"backend": "cpu-fp32", "phase": "train", "status": "ok"}  # what every summary row starts with
    write_cell(tmp_path, "mlp__cpu-fp32__train", {"summary": pd.DataFrame([{"model": "mlp", **header, "x": 1.5}]),
                                                  "epochs": pd.DataFrame({"epoch": [1, 2]})})
    write_cell(tmp_path, "cnn__cpu-fp32__train", {"summary": pd.DataFrame([{"model": "cnn", **header, "x": 2.5}])})
    (tmp_path / "cells" / ".tmp-half").mkdir()  # an interrupted write
    pd.DataFrame([{"model": "zzz"}]).to_parquet(tmp_path / "cells" / ".tmp-half" / "summary.parquet")
    rt = read_run(tmp_path)
    assert sorted(rt["summary"].model) == ["cnn", "mlp"]
    assert set(rt["summary"].run_id) == {"r1"}
    assert rt["epochs"].cell_id.tolist() == ["mlp__cpu-fp32__train"] * 2
    assert not list((tmp_path / "cells").glob(".tmp-mlp*"))


def test_unknown_table_rejected(tmp_path):
    with pytest.raises(ValueError, match="not in the results schema"):
        write_cell(tmp_path, "c", {"nonsense": pd.DataFrame()})


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="not writable"):
        check_writable(blocker / "sub")


def test_not_a_results_folder(tmp_path):
    with pytest.raises(BenchError, match="no meta.json"):
        read_run(tmp_path)


def test_the_stages_sentence_sums_each_stage_over_models_with_its_parts():
    from bench.analysis.stages import stage_sentence
    from bench.plumbing.stages import Stages

    st = Stages()
    st.add("start-up", 2.04)
    for model, seconds in (("mlp", 20.0), ("cnn", 30.0)):
        st.add("infer", seconds, model)
        st.add("infer", 4.0, model, "memory")
        st.add("infer", 1.0, model, "memory")  # entered again: one row
    st.add("dynamics", 0.01, "mlp")  # too short to say
    assert len(st.rows) == 6 and st.seconds("infer", "mlp", "memory") == 5.0
    assert stage_sentence({"stages": st.rows}) == "The run took 52 s: start-up 2.0 s, infer 50 s (memory 10 s)."
    assert stage_sentence({}) == ""


def test_a_run_made_through_the_api_does_not_count_an_earlier_command_as_its_start_up():
    """The CLI's start mark is claimed by the run it starts; a later run of the same process (the
    Python API, a test) starts when it is made."""
    import time

    from bench.plumbing import stages

    stages.mark_start()
    time.sleep(0.05)
    first = stages.claim_start()
    assert time.monotonic() - first >= 0.05
    assert time.monotonic() - stages.claim_start() < 0.01  # nothing marked since: now
