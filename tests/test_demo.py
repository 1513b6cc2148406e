from experiments import demo


def _methods(ppi_pckh, ppi_ap, ppi_mpjpe, recall):
    baseline = {"pckh": 0.25, "AP": 0.02, "mpjpe_mm": 240.0, "recall": 0.6}
    ppi = {"pckh": ppi_pckh, "AP": ppi_ap, "mpjpe_mm": ppi_mpjpe, "recall": recall}
    return {"ppi": ppi, "anchor": baseline, "mean_pose": dict(baseline, mpjpe_mm=270.0)}


def test_the_bar_needs_every_margin():
    ok, text = demo.learned(_methods(0.5, 0.15, 200.0, 0.6))
    assert ok and text.count("yes") == 4
    for worse in (_methods(0.3, 0.15, 200.0, 0.6), _methods(0.5, 0.05, 200.0, 0.6),
                  _methods(0.5, 0.15, 220.0, 0.6), _methods(0.5, 0.15, 200.0, 0.4)):  # fmt: skip
        ok, text = demo.learned(worse)
        assert not ok and text.count("NO") == 1
