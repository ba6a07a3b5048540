import json

import pytest

from reward_service.training.preferences import PreferenceFormatError, PreferencePair, read_preferences, split_hh


def write(tmp_path, lines, name="prefs.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_prompt_chosen_rejected(tmp_path):
    pairs, skipped = read_preferences(write(tmp_path, [{"prompt": "Q", "chosen": " good", "rejected": " bad"}]))
    assert pairs == [PreferencePair("Q", " good", " bad")] and skipped == []


def test_hh_style_splits_the_shared_prompt():
    chosen = "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water, yeast and salt."
    rejected = "\n\nHuman: How do I bake bread?\n\nAssistant: Buy some."
    pair = split_hh(chosen, rejected)
    assert pair.prompt == "\n\nHuman: How do I bake bread?\n\nAssistant:"
    assert pair.chosen == " Mix flour, water, yeast and salt." and pair.rejected == " Buy some."
    plain = split_hh("The movie was great fun", "The movie was dull")
    assert plain.prompt == "The movie was " and plain.chosen == "great fun" and plain.rejected == "dull"


def test_hh_lines_are_detected(tmp_path):
    pairs, _ = read_preferences(write(tmp_path, [{"chosen": "Q: hi A: hello there", "rejected": "Q: hi A: go away"}]))
    assert pairs[0].prompt == "Q: hi A: " and pairs[0].chosen == "hello there"


def test_rank_lists_expand_to_all_ordered_pairs(tmp_path):
    path = write(tmp_path, [{"prompt": "P", "ranking": ["a", "b", "c", "d"]}, ["x", "y"],
                            {"responses": ["r1", "r2", "r3"]}])
    pairs, _ = read_preferences(path)
    assert len(pairs) == 6 + 1 + 3
    assert PreferencePair("P", "a", "d") in pairs and PreferencePair("P", "d", "a") not in pairs
    assert PreferencePair("", "x", "y") in pairs


def test_human_queue_export_lines_with_extra_fields_are_read(tmp_path):
    line = {"prompt": "P", "chosen": "a", "rejected": "b", "task_id": 7, "raters": ["ann"], "source": "human"}
    assert read_preferences(write(tmp_path, [line]))[0] == [PreferencePair("P", "a", "b")]


def test_malformed_lines_are_each_named_and_nothing_is_dropped_silently(tmp_path):
    path = write(tmp_path, [
        {"prompt": "P", "chosen": "a", "rejected": "b"},
        "{not json",
        {"prompt": "P", "chosen": "a"},
        {"prompt": "P", "chosen": 3, "rejected": "b"},
        {"ranking": ["only one"]},
        "",
        {"prompt": "Q", "chosen": "c", "rejected": "d"},
    ])
    with pytest.raises(PreferenceFormatError) as info:
        read_preferences(path)
    message = str(info.value)
    for line, text in ((2, "not valid JSON"), (3, "missing rejected"), (4, "`chosen` must be a string"),
                       (5, "a rank list needs `ranking`")):
        assert f"prefs.jsonl:{line}: {text}" in message
    assert "--skip-bad-lines" in message
    pairs, skipped = read_preferences(path, skip_bad_lines=True)
    assert [p.prompt for p in pairs] == ["P", "Q"] and [line for line, _ in skipped] == [2, 3, 4, 5]


def test_forced_format_and_empty_file(tmp_path):
    with pytest.raises(PreferenceFormatError, match="needs a `prompt`"):
        read_preferences(write(tmp_path, [{"chosen": "a", "rejected": "b"}]), fmt="pairs")
    with pytest.raises(PreferenceFormatError, match="no preference pairs"):
        read_preferences(write(tmp_path, [""], name="empty.jsonl"))
