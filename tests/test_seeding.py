"""The one seeding helper keeps every caller's stream (values recorded from the code before issue 14)."""

from ismcgm import cii, mc, mock, niibias, stats
from ismcgm.seeding import key_hash, rng, seed_sequence


def _draw(g):
    return g.integers(0, 2**62, 3).tolist()


def test_callers_keep_their_streams():
    assert _draw(mc.rng_for(42, "G1_a", "ISM", "G395M", 7)) == [4302962212752576849, 2521918737340298189,
                                                                 3489150088119891859]
    assert _draw(stats.make_rng(3, "O3", "d11")) == [2825434292498393938, 1007326810919680219, 3125304284048675224]
    assert _draw(stats.make_rng(3, "O3")) == [3967900815169930502, 3128976150884247274, 4554178577325405482]
    assert _draw(niibias.rng_for(5, 3.5)) == [486111201221304922, 3992328505092224794, 2417040761265392825]
    assert _draw(mock.plan._rng(7, "mock01", "g395m", "noise")) == [624546204037908967, 4447679837811161873,
                                                                    333716358848373048]
    assert _draw(cii.realisation_rng(11, "mock02", "CGM", 4)) == [3384344860971991399, 1709058747922399163,
                                                                  1499069462029018614]


def test_rng_keys():
    assert key_hash("a", 4) == key_hash("a") & 0xFFFFFFFF
    assert seed_sequence(1, "x", 5).entropy == [1, key_hash("x"), 5]
    assert rng(1, "x").random() == rng(1, "x").random() != rng(1, "y").random()
