import pytest

from reverie import config
from reverie.errors import ReverieError
from reverie.world.pretrain import PretrainConfig


def test_preset_loads_with_nested_world():
    cfg = config.load(PretrainConfig, "world")
    assert cfg.hidden == 256 and cfg.world.n_base == 200


def test_overrides_apply_and_coerce():
    cfg = config.load(PretrainConfig, "world", ["lr=2e-3", "world.n_base=50", "epochs=2"])
    assert cfg.lr == 2e-3 and cfg.world.n_base == 50 and cfg.epochs == 2.0


@pytest.mark.parametrize("override, message", [
    ("hidden=100", "hidden must be a multiple of 32"),
    ("lr=-1", "lr must be > 0"),
    ("lr=fast", "'lr' must be float"),
    ("n_layers=3", "unknown config key 'n_layers'"),
    ("world.n_base=-2", "world.n_base must be >= 0"),
    ("bf16", "must look like key=value"),
])
def test_invalid_values_give_one_line_errors(override, message):
    with pytest.raises(ReverieError, match=message) as e:
        config.load(PretrainConfig, "world", [override])
    assert "\n" not in str(e.value)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ReverieError, match="not found; use a YAML path or one of: .*world"):
        config.load(PretrainConfig, "nope")


def test_a_bare_yes_or_no_is_a_word_where_the_setting_is_one():
    from reverie.sleep.config import SleepConfig
    assert config.load(SleepConfig, None, ["dream.writer=no"]).dream.writer == "no"
    assert config.load(SleepConfig, None, ["dream.writer=yes"]).dream.writer == "yes"
    assert config.load(SleepConfig, None, ["dream.writer_answers=true"]).dream.writer_answers is True
