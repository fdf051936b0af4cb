"""The complaint classifier on English, Hindi, Hinglish and Bengali ticket text."""

from __future__ import annotations

import unicodedata

import pytest

from streams.detectors import classify as classify_module
from streams.detectors.classify import CATEGORIES, PRIORITY, category_scores, classify

# (text, language hint the ticket would carry, expected category)
ENGLISH = [
    # from the brief
    ("my order still hasn't arrived", "en", "delivery"),
    ("you charged my card twice", "en", "payment"),
    ("the grinder arrived broken", "en", "product_quality"),
    ("cart emptied when I went to another page", "en", "website"),
    ("I can't see my order in my account", "en", "account"),
    ("when will I get my refund", "en", "returns"),
    ("been waiting 3 hours and nobody replied", "en", "wait_time"),
    ("beans out of stock on my order", "en", "stock"),
    ("hello", "en", "other"),
    ("order not visible in my account", "en", "account"),
    ("payment failed", "en", "payment"),
    ("refund not received", "en", "returns"),
    # our own
    ("the site keeps crashing at checkout", "en", "website"),
    ("I forgot my password and now I am locked out", "en", "account"),
    ("the coffee tasted stale and bitter", "en", "product_quality"),
    ("parcel delayed, tracking has not updated in a week", "en", "delivery"),
    ("I was double charged for a single order", "en", "payment"),
    ("I want to return the kettle and get a replacement", "en", "returns"),
    ("on hold for 45 minutes, no response at all", "en", "wait_time"),
    ("two items were unavailable and missing from my order", "en", "stock"),
    ("still waiting for my order", "en", "delivery"),
    ("the milk frother is leaking", "en", "product_quality"),
    ("thanks, have a nice day", "en", "other"),
]

HINDI = [
    # from the brief
    ("मेरा ऑर्डर अभी तक नहीं पहुंचा", "hi", "delivery"),
    ("पैसे कट गए लेकिन ऑर्डर नहीं हुआ", "hi", "payment"),
    ("मशीन टूटी हुई आई", "hi", "product_quality"),
    ("वेबसाइट पर कार्ट खाली हो गया", "hi", "website"),
    ("रिफंड कब मिलेगा", "hi", "returns"),
    ("कोई जवाब नहीं दे रहा", "hi", "wait_time"),
    ("मेरे खाते में ऑर्डर नहीं दिख रहा", "hi", "account"),
    # our own
    ("पासवर्ड डालने पर भी लॉगिन नहीं हो रहा", "hi", "account"),
    ("यह कॉफी स्टॉक में नहीं है", "hi", "stock"),
    ("कूरियर वाला बहुत देर से आया", "hi", "delivery"),
    ("कार्ड से दो बार पैसे कटे", "hi", "payment"),
    ("कॉफी का स्वाद बहुत कड़वा है", "hi", "product_quality"),
    ("यह सामान वापस करना है", "hi", "returns"),
    ("दो घंटे से इंतज़ार कर रहा हूँ", "hi", "wait_time"),
    ("ऐप बार बार क्रैश हो रहा है", "hi", "website"),
    ("तीन दिन से कोई जवाब नहीं आया", "hi", "wait_time"),
    ("ओटीपी नहीं आया", "hi", "account"),
    ("नमस्ते, धन्यवाद", "hi", "other"),
]

HINGLISH = [
    # from the brief
    ("mera order abhi tak nahi aaya", "hi", "delivery"),
    ("paisa kat gaya par order nahi hua", "hi", "payment"),
    # our own
    ("grinder toot gaya hai", "hi", "product_quality"),
    ("login nahi ho raha", "hi", "account"),
    ("koi jawab nahi de raha", "hi", "wait_time"),
    ("website pe cart khali ho gaya", "hi", "website"),
    ("refund kab milega", "hi", "returns"),
    ("ye item stock me nahi hai, khatam ho gaya", "hi", "stock"),
    ("paise wapas chahiye", "hi", "returns"),
    ("khate me order nahi dikh raha", "hi", "account"),
]

BENGALI = [
    # from the brief
    ("আমার অর্ডার এখনও আসেনি", "bn", "delivery"),
    ("টাকা কেটে নিয়েছে কিন্তু অর্ডার হয়নি", "bn", "payment"),
    ("প্যাকেট ভাঙা ছিল", "bn", "product_quality"),
    ("ওয়েবসাইটে কার্ট খালি হয়ে গেছে", "bn", "website"),
    ("ফেরত দিতে চাই", "bn", "returns"),
    ("কেউ উত্তর দিচ্ছে না", "bn", "wait_time"),
    ("অ্যাকাউন্টে অর্ডার দেখা যাচ্ছে না", "bn", "account"),
    ("স্টকে নেই", "bn", "stock"),
    # our own
    ("কুরিয়ার এখনও পৌঁছায়নি", "bn", "delivery"),
    ("পাসওয়ার্ড ভুলে গেছি, লগইন করতে পারছি না", "bn", "account"),
    ("কফির স্বাদ খুব তেতো", "bn", "product_quality"),
    ("অ্যাপ বারবার ক্র্যাশ করছে", "bn", "website"),
    ("রিফান্ড কবে পাব", "bn", "returns"),
    ("দুই ঘণ্টা ধরে অপেক্ষা করছি", "bn", "wait_time"),
    ("কার্ড থেকে টাকা কেটেছে", "bn", "payment"),
    ("ধন্যবাদ", "bn", "other"),
]

MIXED = [
    ("मेरा refund अभी तक नहीं आया", "hi", "returns"),
    ("card se पैसे कट गए but order failed", "hi", "payment"),
    ("website पर cart खाली हो गया", "en", "website"),
    ("order abhi tak nahi aaya, कोई जवाब नहीं", "hi", "delivery"),
    ("my account এ অর্ডার দেখা যাচ্ছে না", "bn", "account"),
    ("আমার refund এখনও আসেনি", "bn", "returns"),
]

ALL_CASES = ENGLISH + HINDI + HINGLISH + BENGALI + MIXED


def _ids(cases):
    return [text for text, _, _ in cases]


@pytest.mark.parametrize(("text", "language", "expected"), ALL_CASES, ids=_ids(ALL_CASES))
def test_classifies_ticket_text(text, language, expected):
    assert classify(text, language) == expected


@pytest.mark.parametrize(("text", "language", "expected"), ALL_CASES, ids=_ids(ALL_CASES))
def test_language_hint_never_changes_the_answer(text, language, expected):
    wrong_hint = "bn" if language != "bn" else "hi"
    answers = {classify(text), classify(text, None), classify(text, language), classify(text, wrong_hint),
               classify(text, "xx")}
    assert answers == {expected}


def test_enough_cases_of_our_own_per_language():
    # The brief's examples plus at least four of our own for each language.
    assert len(ENGLISH) >= 12 + 4
    assert len(HINDI) >= 7 + 4
    assert len(HINGLISH) >= 2 + 4
    assert len(BENGALI) >= 8 + 4
    assert {expected for _, _, expected in ALL_CASES} == set(CATEGORIES)


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t", "!!! ... ???", "।", "🙂🙂"])
def test_empty_or_wordless_text_is_other(text):
    assert classify(text) == "other"
    assert classify(text, "hi") == "other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MY ORDER STILL HASN'T ARRIVED!!!", "delivery"),
        ("My order still hasn’t arrived.", "delivery"),  # typographic apostrophe
        ("Refund?!", "returns"),
        ("you CHARGED my card...twice", "payment"),
        ("I can’t see my order (in my account)", "account"),
        ("…पैसे—कट गए।", "payment"),
        ("«ফেরত» দিতে চাই!", "returns"),
        ("cart-emptied, page: reloaded", "website"),
        ("payment    failed\n\n", "payment"),
    ],
)
def test_punctuation_and_case_do_not_matter(text, expected):
    assert classify(text) == expected


@pytest.mark.parametrize(
    ("variant", "plain"),
    [
        ("मेरा ऑर्डर अभी तक नहीं पहुँचा", "मेरा ऑर्डर अभी तक नहीं पहुंचा"),  # chandrabindu vs anusvara
        ("दो घंटे से इंतज़ार", "दो घंटे से इंतजार"),  # with and without nukta
        ("दो घंटे से इंत\u095bार", "दो घंटे से इंतजार"),  # precomposed ज़ (U+095B)
        ("ফেরত\u200c দিতে চাই", "ফেরত দিতে চাই"),  # zero-width non-joiner
        (unicodedata.normalize("NFD", "আমার অর্ডার এখনও আসেনি"), "আমার অর্ডার এখনও আসেনি"),
    ],
)
def test_spelling_variants_of_the_same_text_agree(variant, plain):
    assert classify(variant) == classify(plain) != "other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Latin keywords match whole words or word prefixes, never inside a word.
        ("the refunded amount is wrong", "returns"),
        ("please apply the discount", "other"),  # "app" must not match "apply"
        ("my charger arrived broken", "product_quality"),  # not payment's "charge"
        ("the cardamom pods were stale", "product_quality"),  # not payment's "card"
        ("my toothbrush head", "other"),  # not Hinglish "toot"
        ("a fatal error on the site", "website"),  # not Hinglish "fata"
        # Short Devanagari/Bengali words that sit inside unrelated words are left out.
        ("चॉकलेट बहुत अच्छा है", "other"),  # "लेट" (late) is inside चॉकलेट
        ("मैं बिलकुल ठीक हूँ", "other"),  # "बिल" (bill) is inside बिलकुल
        ("বিলম্ব হয়েছে", "other"),  # "বিল" (bill) is inside বিলম্ব
    ],
)
def test_keywords_match_where_they_should_and_nowhere_else(text, expected):
    assert classify(text) == expected


@pytest.mark.parametrize(
    ("text", "tied", "winner"),
    [
        ("refund not received", {"returns", "delivery"}, "returns"),
        ("रिफंड कब मिलेगा", {"returns", "delivery"}, "returns"),
        ("the grinder arrived broken", {"product_quality", "delivery"}, "product_quality"),
        ("the checkout is broken", {"website", "product_quality"}, "website"),
        ("charged for a refund I never asked for", {"payment", "returns"}, "returns"),
        ("order took 48 hours to arrive", {"delivery", "wait_time"}, "delivery"),
    ],
)
def test_equal_scores_go_to_the_earlier_category_in_priority(text, tied, winner):
    scores = category_scores(text)
    assert set(scores) == tied and len(set(scores.values())) == 1
    assert classify(text) == winner
    assert PRIORITY.index(winner) == min(PRIORITY.index(category) for category in tied)


def test_more_matches_beat_priority():
    # website outranks delivery on a tie, but two delivery keywords beat one website keyword.
    text = "the courier lost the parcel and the tracking page"
    assert category_scores(text) == {"delivery": 3, "website": 1}
    assert classify(text) == "delivery"


def test_a_longer_phrase_hides_another_categorys_keyword_inside_it():
    # "नहीं आया" alone is delivery; inside "जवाब नहीं आया" it is part of the wait_time phrase.
    assert category_scores("जवाब नहीं आया") == {"wait_time": 1}
    assert category_scores("ऑर्डर नहीं आया") == {"delivery": 1}
    # "money" is payment, "money back" is returns.
    assert category_scores("I want my money back") == {"returns": 1}


def test_categories_and_priority_are_the_published_sets():
    assert CATEGORIES == (
        "delivery", "stock", "payment", "website", "account", "product_quality", "returns", "wait_time", "other",
    )
    assert sorted(PRIORITY) == sorted(CATEGORIES[:-1])


@pytest.mark.parametrize(
    "text",
    _ids(ALL_CASES)
    + ["12345", "₹500", "a" * 10_000, "refund " * 500, "order order order", "ok 👍", "ঃ", "ॐ", "ñandú roto"],
)
def test_every_answer_is_a_known_category(text):
    assert classify(text) in CATEGORIES
    assert set(category_scores(text)) <= set(CATEGORIES) - {"other"}


def test_every_listed_keyword_classifies_as_its_own_category():
    # Guards against a keyword that can never match (normalised away, or hidden by a longer one).
    for category, by_language in classify_module.KEYWORDS.items():
        for language, words in by_language.items():
            for word in words:
                text = word.removesuffix("$")
                assert classify(text) == category, (category, language, word)


def test_a_keyword_in_two_categories_is_refused_by_name():
    tables = {"payment": {"en": ("bank",)}, "returns": {"en": ("bank",)}}
    with pytest.raises(ValueError, match="'bank'.*'payment'.*'returns'"):
        classify_module._compile_keywords(tables)


def test_a_whole_word_mark_on_a_non_latin_keyword_is_refused():
    with pytest.raises(ValueError, match="whole-word mark"):
        classify_module._compile_keywords({"payment": {"hi": ("बैंक$",)}})
