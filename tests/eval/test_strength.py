"""The strength probe: the best scale of a harmonizer's change, against the scorer."""



def test_probe_strength_matches_the_scorer(mini_data, tmp_path):
    from eval.strength import strength
    from eval.score import evaluate_checkpoint, score
    from harmonizers.train import main as htrain
    ck = tmp_path / "h.safetensors"
    htrain(data=str(mini_data), arch="issam_test", size=32, steps=3, batch_size=4, lr=1e-2, device="cpu", out=str(ck))
    res = strength(data=str(mini_data), ckpt=str(ck), domains="MiniAdobe")
    want = evaluate_checkpoint(ck, mini_data, "MiniAdobe")["summary"]["MiniAdobe"]["fMSE"]
    comp = score(mini_data, lambda x, m: x, "MiniAdobe").summary()["MiniAdobe"]["fMSE"]
    r = res["MiniAdobe"]
    assert abs(r["fMSE_model"] - want) < 1e-3 * want and abs(r["fMSE_composite"] - comp) < 1e-3 * comp
    assert r["fMSE_model"] != r["fMSE_composite"]  # the model changed something
    assert r["fMSE_beta_star"] <= min(r["fMSE_model"], r["fMSE_composite"]) + 1e-3

