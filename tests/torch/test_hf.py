"""compressm_torch.hf on tiny random transformers Mamba and Mamba-2 models."""

import os
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
chf = pytest.importorskip("compressm_torch.hf")

from transformers.models.mamba import modeling_mamba  # noqa: E402
from transformers.models.mamba2 import modeling_mamba2  # noqa: E402

import compressm_torch as ct  # noqa: E402

VOCAB = 64


def tiny_model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "mamba":
        config = transformers.MambaConfig(
            hidden_size=16, num_hidden_layers=2, state_size=8, vocab_size=VOCAB
        )
        return transformers.MambaForCausalLM(config).eval()
    config = transformers.Mamba2Config(
        hidden_size=16, num_hidden_layers=2, state_size=8, vocab_size=VOCAB,
        num_heads=4, head_dim=8, n_groups=2, expand=2, chunk_size=4,
    )
    return transformers.Mamba2ForCausalLM(config).eval()


def token_ids(batch=3, length=10, seed=1):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


KINDS = ["mamba", "mamba2"]


def recorded_scans(kind, model, ids, monkeypatch):
    """The per-step (a, b, c) of every mixer's scan, as the mixer hands them to its own scan
    function: a (S, L, channels, N), b (S, L, channels, N), c (S, L, channels, N), float64."""
    records = []
    if kind == "mamba":
        scan = modeling_mamba.mamba_selective_scan

        def recording(hidden_states, dt, A, B, C, *args, delta_bias=None, **kwargs):
            step = torch.nn.functional.softplus(dt.double() + delta_bias.double()[:, None])
            a = torch.exp(step.transpose(1, 2)[..., None] * A.double())  # (S, L, d, N)
            b = step.transpose(1, 2)[..., None] * B.double().transpose(1, 2)[:, :, None, :]
            c = C.double().transpose(1, 2)[:, :, None, :].expand_as(b)
            records.append((a, b, c))
            return scan(hidden_states, dt, A, B, C, *args, delta_bias=delta_bias, **kwargs)

        monkeypatch.setattr(modeling_mamba, "mamba_selective_scan", recording)
    else:
        scan = modeling_mamba2.mamba2_chunk_scan

        def recording(hidden_states, dt, A, B, C, *args, dt_bias=None, dt_limit=(0.0, float("inf")), **kwargs):
            S, L, H, P = hidden_states.shape
            G, N = B.shape[2], B.shape[3]
            step = torch.nn.functional.softplus(dt.double() + dt_bias.double()).clamp(*dt_limit)
            heads = lambda M: M.double().repeat_interleave(H // G, dim=2)  # noqa: E731
            channels = lambda M: M.repeat_interleave(P, dim=2)  # noqa: E731  (S, L, H * P, N)
            a = channels(torch.exp(step * A.double())[..., None].expand(S, L, H, N))
            b = channels(step[..., None] * heads(B))
            records.append((a, b, channels(heads(C))))
            return scan(hidden_states, dt, A, B, C, *args, dt_bias=dt_bias, dt_limit=dt_limit, **kwargs)

        monkeypatch.setattr(modeling_mamba2, "mamba2_chunk_scan", recording)
    with torch.no_grad():
        model(ids)
    return records


def brute_force_energy(a, b, c):
    """sum over channels of diag(P_bar) diag(Q_bar), from the dense recursions
    P_{k+1} = A_k P_k A_k^H + B_k B_k^H, Q_k = A_k^H Q_{k+1} A_k + C_k^H C_k per channel,
    P_bar = mean_{k=1..L} P_k, Q_bar = mean_{k=0..L-1} Q_k, each averaged over the batch."""
    S, L, H, N = a.shape
    P, Q = torch.zeros(S, H, N, N, dtype=torch.float64), torch.zeros(S, H, N, N, dtype=torch.float64)
    P_sum, Q_sum = torch.zeros_like(P), torch.zeros_like(Q)
    for k in range(L):
        A = torch.diag_embed(a[:, k])
        Bk = b[:, k][..., None]  # (S, H, N, 1)
        P = A @ P @ A.mT + Bk @ Bk.mT
        P_sum += P
    for k in reversed(range(L)):
        A = torch.diag_embed(a[:, k])
        Ck = c[:, k][..., None, :]  # (S, H, 1, N)
        Q = A.mT @ Q @ A + Ck.mT @ Ck
        Q_sum += Q
    P_bar, Q_bar = (P_sum / L).mean(0), (Q_sum / L).mean(0)
    return (torch.diagonal(P_bar, dim1=-2, dim2=-1) * torch.diagonal(Q_bar, dim1=-2, dim2=-1)).sum(0)


@pytest.mark.parametrize("kind", KINDS)
def test_energies_equal_a_brute_force_simulation_of_each_mixer(kind, monkeypatch):
    model, ids = tiny_model(kind), token_ids()
    energies = ct.state_energies(model, ids)
    records = recorded_scans(kind, model, ids, monkeypatch)
    names = [name for name, _ in chf.mamba_mixers(model)]
    assert list(energies) == names and len(records) == len(names)
    for name, (a, b, c) in zip(names, records, strict=True):
        assert energies[name].dtype == torch.float64
        torch.testing.assert_close(energies[name], brute_force_energy(a, b, c), rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_keeping_every_state_in_any_order_is_the_identity(kind):
    model, ids = tiny_model(kind), token_ids()
    permuted = chf.compress(model, calibration=ids, ranks={}).model
    for name, mixer in chf.mamba_mixers(model):
        order = torch.randperm(8, generator=torch.Generator().manual_seed(2)).tolist()
        ct.reduce.set_submodule(permuted, name, chf.MixerView(mixer).with_states(order))
    with torch.no_grad():
        torch.testing.assert_close(permuted(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-6)


def silence_state(kind, mixer, state, matrix):
    """Zero the ``matrix`` ("B" or "C") entries of ``state`` in every group."""
    n = mixer.ssm_state_size
    with torch.no_grad():
        if kind == "mamba":
            offset = mixer.time_step_rank + (0 if matrix == "B" else n)
            mixer.x_proj.weight[offset + state] = 0
            return
        inner, groups = mixer.intermediate_size, mixer.n_groups
        for g in range(groups):
            channel = inner + (0 if matrix == "B" else groups * n) + g * n + state
            mixer.in_proj.weight[inner + channel] = 0
            mixer.conv1d.weight[channel] = 0
            mixer.conv1d.bias[channel] = 0


@pytest.mark.parametrize("matrix", ["B", "C"])
@pytest.mark.parametrize("kind", KINDS)
def test_removing_a_state_with_zero_B_or_C_changes_nothing(kind, matrix):
    model, ids = tiny_model(kind), token_ids()
    name, mixer = chf.mamba_mixers(model)[0]
    silence_state(kind, mixer, 5, matrix)
    assert ct.state_energies(model, ids)[name][5] == 0
    result = chf.compress(model, calibration=ids, ranks={name: 7})
    assert result.state_sizes == {name: 7, chf.mamba_mixers(model)[1][0]: 8}
    assert sorted(result.reductions[0].kept) == [0, 1, 2, 3, 4, 6, 7]
    with torch.no_grad():
        torch.testing.assert_close(result.model(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_generate_after_a_reduction_to_per_layer_sizes(kind):
    model, ids = tiny_model(kind), token_ids()
    names = [name for name, _ in chf.mamba_mixers(model)]
    reduced = chf.compress(model, calibration=ids, ranks={names[0]: 3, names[1]: 5}).model
    assert reduced.config.compressm_state_sizes == [3, 5]
    assert model.config.to_dict().get("compressm_state_sizes") is None  # the input is untouched
    prompt = ids[:2, :4]
    cached = reduced.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
    uncached = reduced.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.shape == (2, 10) and torch.equal(cached, uncached)


def matching_rows(old, new, axis):
    """For each slice of ``new`` along ``axis``, the index of the equal slice of ``old``."""
    old_slices, new_slices = old.movedim(axis, 0), new.movedim(axis, 0)
    return torch.tensor([
        next(i for i in range(len(old_slices)) if torch.equal(old_slices[i], row)) for row in new_slices
    ])


@pytest.mark.parametrize("kind", KINDS)
def test_adam_moments_are_the_kept_entries_of_the_old_ones(kind):
    model, ids = tiny_model(kind), token_ids()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(ids, labels=ids).loss.backward()
        optimizer.step()
    name = chf.mamba_mixers(model)[0][0]
    result = chf.compress(model, optimizer, calibration=ids, ranks={name: 4})
    old, new = dict(model.named_parameters()), dict(result.model.named_parameters())
    sliced = {"A_log": 1, "x_proj.weight": 0} if kind == "mamba" else {"in_proj.weight": 0, "conv1d.weight": 0, "conv1d.bias": 0}
    for key, parameter in new.items():
        old_state, new_state = optimizer.state[old[key]], result.optimizer.state[parameter]
        assert torch.equal(new_state["step"], old_state["step"])
        local = key.removeprefix(name + ".")
        if key.startswith(name + ".") and local in sliced:
            rows = matching_rows(old[key].detach(), parameter.detach(), sliced[local])
            assert len(rows) < old[key].shape[sliced[local]]
            for moment in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(new_state[moment], old_state[moment].index_select(sliced[local], rows), rtol=0, atol=0)
        else:
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(new_state[moment], old_state[moment])
    result.model(ids, labels=ids).loss.backward()
    result.optimizer.step()  # the sliced state fits the new shapes


@pytest.mark.parametrize("kind", KINDS)
def test_save_pretrained_and_load_pretrained_round_trip(kind, tmp_path):
    model, ids = tiny_model(kind), token_ids()
    names = [name for name, _ in chf.mamba_mixers(model)]
    reduced = chf.compress(model, calibration=ids, ranks={names[0]: 2, names[1]: 6}).model.eval()
    reduced.save_pretrained(tmp_path)
    loaded = chf.load_pretrained(tmp_path)
    assert [m.ssm_state_size for _, m in chf.mamba_mixers(loaded)] == [2, 6]
    tied = loaded.lm_head.weight is loaded.backbone.embeddings.weight
    assert not loaded.training and tied == loaded.config.tie_word_embeddings
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, reduced(ids).logits, rtol=0, atol=0)


def test_load_pretrained_of_an_unreduced_model_is_from_pretrained(tmp_path):
    model, ids = tiny_model("mamba"), token_ids()
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(chf.load_pretrained(tmp_path)(ids).logits, model(ids).logits)


def test_compress_with_tau_reduces_by_the_energy_spectrum():
    model, ids = tiny_model("mamba"), token_ids()
    result = chf.compress(model, calibration=ids, tau=0.3)
    spectra = ct.hankel_singular_values(model, calibration=ids)
    for record in result.reductions:
        kept = spectra[record.name][: record.new_dim].sum() / spectra[record.name].sum()
        dropped_one_less = spectra[record.name][: record.new_dim - 1].sum() / spectra[record.name].sum()
        assert kept >= 0.7 > dropped_one_less
        assert result.state_sizes[record.name] == record.new_dim


def test_bad_arguments_raise_and_name_the_value():
    model, ids = tiny_model("mamba"), token_ids()
    with pytest.raises(ValueError, match="exactly one of `ranks` or `tau`"):
        chf.compress(model, calibration=ids)
    with pytest.raises(ValueError, match="unknown layers"):
        chf.compress(model, calibration=ids, ranks={"nope": 2})
    with pytest.raises(ValueError, match="no MambaMixer"):
        chf.compress(torch.nn.Linear(2, 2), calibration=ids, ranks={})
    with pytest.raises(ValueError, match=r"`keep` must hold distinct state indices in \[0, 7\]"):
        chf.MixerView(chf.mamba_mixers(model)[0][1]).with_states([1, 1])


def test_importing_compressm_torch_does_not_import_transformers():
    code = "import sys, compressm_torch; print('transformers' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("kind", KINDS)
def test_mixers_are_compressible_layers_through_the_registered_view(kind):
    model = tiny_model(kind)
    layers = ct.compressible_layers(model)
    assert [name for name, _ in layers] == [name for name, _ in chf.mamba_mixers(model)]
    assert all(isinstance(layer, chf.MixerView) and layer.state_dim == 8 for _, layer in layers)
    assert isinstance(layers[0][1], ct.ReducibleSelectiveSSM)
