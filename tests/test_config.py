"""crossflow.config: presets, strict loading (unknown keys, types, choices), round trips, immutability."""
from __future__ import annotations

import dataclasses
import json

import pytest

from crossflow.config import PRESETS, Config, ConfigError, config_from_dict, get_config, load_config, to_dict, to_json


def test_presets_build_and_profile_equals_name():
    assert set(PRESETS) >= {"smoke", "tiny", "paper"}
    for name in PRESETS:
        cfg = get_config(name)
        assert isinstance(cfg, Config)
        expected = "paper" if name == "paper-baseline" else name
        assert cfg.profile == expected, f"preset {name!r} has profile {cfg.profile!r}"
        assert cfg.name == name


@pytest.mark.parametrize("name,shape", [("smoke", (4, 8, 8)), ("tiny", (4, 8, 8)), ("paper", (4, 32, 32))])
def test_latent_shape(name, shape):
    assert get_config(name).latent_shape == shape


def test_latent_shape_rejects_indivisible_image_size():
    with pytest.raises(ConfigError, match="image_size"):
        get_config("tiny", {"data.image_size": 30})        # factor 4 does not divide 30


def test_paper_preset_follows_the_method_spec():
    """docs/method.md sections 2-5 and 10; a typo in a preset must fail here."""
    c = get_config("paper")
    assert c.data.image_size == 256 and c.text.max_length == 77
    assert c.autoencoder.scaling_factor == pytest.approx(0.23010)
    assert (c.text_ve.width, c.text_ve.depth, c.text_ve.heads, c.text_ve.ffn, c.text_ve.reductions) == \
        (768, 11, 8, 1024, 3)
    assert c.text_ve.dropout == pytest.approx(0.1)
    o = c.objective
    assert o.sigma_min == pytest.approx(1e-5) and (o.t_mean, o.t_std) == (0.0, 1.0)
    assert o.uncond_prob == pytest.approx(0.1) and o.source == "text" and o.enc_loss == "it_contrastive"
    assert (o.kl_form, o.kl_weight) == ("code", pytest.approx(1e-2))
    t = c.train
    assert t.batch_size == 1024 and t.lr == pytest.approx(1e-4) and t.betas == (0.9, 0.9)
    assert t.weight_decay == pytest.approx(0.03) and t.warmup_steps == 5000 and t.ema_decay == pytest.approx(0.9999)
    assert t.steps == 300_000 and t.mixed_precision == "bf16"
    assert c.sample.solver == "euler" and c.sample.steps == 50 and c.sample.cfg_scale == pytest.approx(7.0)
    assert c.flow.cross_attention is False


# ----------------------------------------------------------------------------------------------------------
# Unknown keys, presets, types, choices
# ----------------------------------------------------------------------------------------------------------

def test_unknown_top_level_key_suggests_close_match():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"nmae": "x"})
    assert "nmae" in str(e.value) and "did you mean" in str(e.value) and "'name'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        get_config("smoke", {"profle": "smoke"})
    assert "profle" in str(e.value) and "did you mean 'profile'" in str(e.value)


def test_unknown_key_in_section_suggests_close_match():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"flow": {"widht": 64}})
    msg = str(e.value)
    assert "widht" in msg and "flow" in msg and "did you mean 'width'" in msg
    with pytest.raises(ConfigError) as e:
        get_config("smoke", {"objective.kl_wieght": 0.1})
    assert "kl_wieght" in str(e.value) and "did you mean 'kl_weight'" in str(e.value)


def test_unknown_section_in_dotted_override():
    with pytest.raises(ConfigError) as e:
        get_config("smoke", {"flw.width": 64})
    assert "flw" in str(e.value) and "did you mean 'flow'" in str(e.value)


def test_unknown_preset_suggests_close_match():
    with pytest.raises(ConfigError) as e:
        get_config("smok")
    assert "smok" in str(e.value) and "did you mean 'smoke'" in str(e.value)


@pytest.mark.parametrize("key,value", [
    ("flow.depth", "2"),            # string for int
    ("flow.depth", 2.0),            # float for int
    ("train.steps", 1.5),           # float for int
    ("flow.depth", True),           # bool for int
    ("flow.cross_attention", 1),    # int for bool
    ("flow.cross_attention", "true"),
    ("train.lr", "1e-3"),           # string for float
    ("train.lr", True),             # bool for float
    ("name", 3),                    # int for str
    ("data.colors", "red"),         # str for tuple
])
def test_wrong_type_raises_naming_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        get_config("smoke", {key: value})
    assert key in str(e.value), str(e.value)


def test_wrong_type_in_nested_dict_names_dotted_key():
    with pytest.raises(ConfigError, match=r"flow\.depth"):
        config_from_dict({"flow": {"depth": 2.0}})
    with pytest.raises(ConfigError, match="flow"):
        config_from_dict({"flow": 3})                        # a section that is not a mapping


def test_int_accepted_for_float_field():
    cfg = get_config("smoke", {"train.lr": 1, "objective.kl_weight": 0})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.objective.kl_weight == 0.0 and isinstance(cfg.objective.kl_weight, float)


def test_optional_fields_accept_none_and_their_type():
    cfg = get_config("smoke", {"autoencoder.scaling_factor": None, "data.fashion_root": "/tmp/x"})
    assert cfg.autoencoder.scaling_factor is None and cfg.data.fashion_root == "/tmp/x"
    with pytest.raises(ConfigError, match="autoencoder.scaling_factor"):
        get_config("smoke", {"autoencoder.scaling_factor": "big"})


@pytest.mark.parametrize("key,value", [
    ("objective.kl_form", "foo"), ("objective.source", "image"), ("objective.enc_loss", "recon"),
    ("text_ve.kind", "vae"), ("sample.solver", "rk4"), ("train.mixed_precision", "fp8"), ("profile", "huge"),
    ("data.source", "imagenet")])
def test_invalid_choice_raises(key, value):
    with pytest.raises(ConfigError) as e:
        get_config("smoke", {key: value})
    assert key in str(e.value) and repr(value) in str(e.value)


@pytest.mark.parametrize("over,match", [
    ({"flow.width": 30, "flow.heads": 4}, "flow.width"),
    ({"text_ve.width": 30, "text_ve.heads": 2}, "text_ve.width"),
    ({"text_ve.width": 36, "text_ve.heads": 2, "text_ve.reductions": 3}, "reductions"),
    ({"flow.patch_size": 3}, "patch_size"),
    ({"objective.uncond_prob": 1.0}, "uncond_prob"),
    ({"objective.uncond_prob": -0.1}, "uncond_prob"),
])
def test_impossible_combinations_raise(over, match):
    with pytest.raises(ConfigError, match=match):
        get_config("smoke", over)


def test_baseline_consistency_check():
    with pytest.raises(ConfigError, match="cross_attention"):
        get_config("smoke", {"objective.source": "noise"})
    cfg = get_config("smoke", {"objective.source": "noise", "flow.cross_attention": True})
    assert cfg.objective.source == "noise" and cfg.flow.cross_attention


# ----------------------------------------------------------------------------------------------------------
# Round trips, immutability, replace
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["smoke", "tiny", "paper"])
def test_json_round_trip(name, tmp_path):
    cfg = get_config(name, {"train.steps": 7})
    s = to_json(cfg)
    back = config_from_dict(json.loads(s))
    assert back == cfg
    assert isinstance(back.data.heldout, tuple) and all(isinstance(p, tuple) for p in back.data.heldout)
    assert isinstance(back.train.betas, tuple)
    p = tmp_path / "config.json"
    p.write_text(s)
    assert load_config(p) == cfg
    assert to_json(back) == s
    assert to_dict(back) == to_dict(cfg)


def test_configs_are_frozen():
    cfg = get_config("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"                                   # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.flow.width = 999                                 # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.objective.uncond_prob = 0.5                      # type: ignore[misc]


def test_replace_with_dotted_keys_returns_new_config():
    cfg = get_config("smoke")
    new = cfg.replace({"train.steps": 3, "flow.depth": 1, "name": "x"})
    assert (new.train.steps, new.flow.depth, new.name) == (3, 1, "x")
    assert (cfg.train.steps, cfg.flow.depth, cfg.name) == (20, 2, "smoke")   # original untouched
    assert new.flow.width == cfg.flow.width and new.text_ve == cfg.text_ve
    kw = cfg.replace(name="y")
    assert kw.name == "y"
    with pytest.raises(ConfigError, match="flow.depth"):
        cfg.replace({"flow.depth": "3"})


def test_get_config_overrides_beat_preset():
    cfg = get_config("paper", {"flow.depth": 2, "train.lr": 5e-4})
    assert cfg.flow.depth == 2 and cfg.train.lr == pytest.approx(5e-4)
    assert cfg.flow.width == 1280 and cfg.profile == "paper"


# ----------------------------------------------------------------------------------------------------------
# Issue 12 (5): section dicts merge, bad override types, every numeric field range-checked at load
# ----------------------------------------------------------------------------------------------------------

def test_section_dict_override_merges_instead_of_resetting():
    smoke = get_config("smoke")
    cfg = get_config("smoke", {"train": {"steps": 5}})
    assert cfg.train.steps == 5
    assert dataclasses.replace(cfg.train, steps=smoke.train.steps) == smoke.train   # the rest is smoke's, not tiny's
    with pytest.raises(ConfigError, match="unknown config key 'stpes'"):
        get_config("smoke", {"train": {"stpes": 5}})
    with pytest.raises(ConfigError, match="must be given as a dict"):
        get_config("smoke", {"train": 5})


def test_overrides_must_be_a_dict():
    with pytest.raises(ConfigError, match="overrides must be a dict of dotted keys"):
        get_config("smoke", "train.steps=5")
    with pytest.raises(ConfigError, match="overrides must be a dict"):
        get_config("tiny").replace(["train.steps", 5])


@pytest.mark.parametrize("key,value", [("train.steps", 0), ("train.ckpt_every", 0), ("train.log_every", 0),
                                       ("train.batch_size", 0), ("train.lr", 0.0), ("data.num_train", 0),
                                       ("objective.uncond_prob", 1.0), ("train.ema_decay", 1.5),
                                       ("sample.steps", 0), ("text_ve.dropout", -0.1)])
def test_out_of_range_values_are_named_at_load(key, value):
    with pytest.raises(ConfigError, match=f"'{key}' = .* out of range"):
        get_config("smoke", {key: value})


def test_every_numeric_field_has_a_range():
    from crossflow.config import _RANGES
    import typing
    numeric = []
    for sec in dataclasses.fields(Config):
        if dataclasses.is_dataclass(sec.type if not isinstance(sec.type, str) else None) or sec.name in (
                "data", "text", "autoencoder", "text_ve", "flow", "objective", "train", "sample"):
            cls = type(getattr(Config(), sec.name))
            for f in dataclasses.fields(cls):
                hint = typing.get_type_hints(cls)[f.name]
                if hint in (int, float) or hint == typing.Optional[float] or hint == typing.Optional[int]:
                    numeric.append(f"{sec.name}.{f.name}")
    assert sorted(set(numeric) - set(_RANGES)) == []
