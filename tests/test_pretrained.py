"""The weights we ship keep their model cards' promises on data they never saw.

Each shipped checkpoint is tested on a test split generated with the recipe it was trained on but a seed that
neither its training nor its validation used. Its accuracy there must agree with the accuracy on its card (the
test split of its training file) within 4 standard errors of the difference of two binomial proportions
(about 1.5 points for a 97% model, 3.5 points for an 84% one on ~2,000 questions): a gap larger than that means
the card or the weights are wrong, not bad luck (probability about 6e-5 per checkpoint)."""
import math

import pytest

import tda
from tda.core import TdaError
from tda.data.mref import GENERATOR_VERSION, generate_mref, mref_params
from tda.experiments.table1 import evaluate_pretrained
from tda.models.pretrained import pretrained_cards

CARDS = pretrained_cards()
SHIPPED = {('hattnet_ctx', 'mref'), ('hattnet', 'mref'), ('soft', 'mref'), ('hard', 'mref'),  # the README's Table 1
           ('hattnet_ctx', 'mdist'), ('hattnet', 'mdist'), ('soft', 'mdist'), ('hard', 'mdist'), ('stn', 'mdist'),
           ('hattnet_ctx', 'mbg'), ('soft', 'mbg'), ('hard', 'mbg'), ('hattnet', 'mbg'), ('stn', 'mref'), ('stn', 'mbg')}
UNSEEN_SEED = 1234
TEST_IMAGES = 300  # about 2,100 questions


def test_the_package_ships_the_table1_models():
    assert SHIPPED <= set(CARDS), f"missing shipped weights: {sorted(SHIPPED - set(CARDS))}"
    for (m, d), card in CARDS.items():
        assert card['data']['variant'] == d and card['model'] == m
        # the card's test figures are of data of this generator (`data`: what the weights were trained on, which may be
        # an earlier generator's; `test_measured.data`: what the card's test was measured on, by remeasure_cards)
        measured = card.get('test_measured', {}).get('data', card['data'])
        assert measured['generator_version'] == GENERATOR_VERSION, \
            f"{m}-{d}: measure its card again on a file of this generator (tda.experiments.table1.remeasure_cards)"
        assert card['test']['n'] > 5000 and 0 <= card['test']['tps'] <= 1
        assert card['git'] and card['versions']['torch'] and card['epochs_run'] >= card['best_epoch'] > 0


@pytest.fixture(scope='module')
def unseen(tmp_path_factory):
    "One test split per variant the cards name, from the paper's recipe and a seed no card was made with."
    d, out = tmp_path_factory.mktemp('unseen'), {}
    for v in sorted({d_ for _, d_ in CARDS}):
        assert all(c['data']['seed'] != UNSEEN_SEED for c in CARDS.values())
        p = mref_params(v, 'paper', seed=UNSEEN_SEED, splits={'test': TEST_IMAGES})
        out[v] = generate_mref(d/f'{v}.h5', p, workers=1, progress=False)
    return out


@pytest.mark.parametrize('key', sorted(CARDS), ids=[f'{m}-{d}' for m, d in sorted(CARDS)])
def test_shipped_weights_match_their_card_on_unseen_data(key, unseen):
    name, dataset = key
    row, model = evaluate_pretrained(name, dataset, unseen[dataset])
    card = CARDS[key]['test']
    p, n1, n2 = card['accuracy'], row['n'], card['n']
    tol = 4 * math.sqrt(max(p * (1 - p), 1e-4) * (1 / n1 + 1 / n2))
    assert abs(row['accuracy'] - p) <= tol, f"{name} on unseen {dataset}: {row['accuracy']:.4f} vs card {p:.4f} ± {tol:.4f}"
    assert not model.training


def test_create_model_pretrained():
    m = tda.create_model('hattnet_ctx', pretrained='mref')
    assert not m.training and type(m).__name__ == 'HAttNet'
    with pytest.raises(TdaError, match=r"no pretrained weights for 'hattnet_ctx' on 'nowhere'.*hattnet_ctx \(pretrained='mref'\)"):
        tda.create_model('hattnet_ctx', pretrained='nowhere')
