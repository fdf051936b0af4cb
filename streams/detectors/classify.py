"""The complaint category of a support ticket, derived from its free text.

A ticket's category is its ``category`` field or, without one, its text
classified: ``ticket_category`` decides it, for the ``complaint_spike`` rule
and for the ClickHouse sink alike, so the alerts and the analysts' complaint
counts agree. The classifier is keyword based, needs only the standard
library, and reads English, Hindi (Devanagari and romanised "Hinglish") and
Bengali, also mixed in one text.

Categories
    delivery         late, not arrived, shipping, courier, tracking
    stock            out of stock, unavailable, items missing because unavailable
    payment          charged, double charge, payment failed, card, UPI, money deducted
    website          site error, page not loading, cart emptied, checkout broken, app crash
    account          login, password, order not visible in the account
    product_quality  broken, damaged, defective, stale, bad taste, leaking
    returns          return, refund, replacement, exchange
    wait_time        nobody replied, waiting for hours, no response, on hold
    other            nothing matched

How a text is scored
    The text is normalised (Unicode NFC, casefold, apostrophes dropped so
    "can't" reads "cant", other punctuation and symbols become spaces,
    whitespace collapsed; in Devanagari the nukta is dropped and chandrabindu
    read as anusvara, because people type "इंतज़ार"/"इंतजार" and
    "पहुँचा"/"पहुंचा" interchangeably). The text is then scanned left to
    right: at each position the longest keyword of any category wins and
    matches never overlap, so a longer phrase in one category ("money back",
    "जवाब नहीं") hides the shorter keyword of another inside it ("money",
    "नहीं आया"). A category's score is its number of matches.

    Latin keywords (English and Hinglish) match at the start of a word and, by
    default, as a prefix: "refund" matches "refunded". A keyword ending in "$"
    must match a whole word: "app$" matches "app" but not "apply". Devanagari
    and Bengali keywords match anywhere (as substrings), because those scripts
    attach suffixes and postpositions to the word ("ওয়েবসাইটে", "खाते में").
    Which keyword sets are scanned follows from the scripts found in the text.

Tie-break
    The highest score wins; equal scores go to the category earlier in
    ``PRIORITY``. Specific, actionable categories come first; delivery and
    wait_time come last because customers mention them in passing in almost
    any complaint ("refund not received", "still waiting for my refund"), so
    they win only when nothing more specific scores as high. Nothing matched
    gives "other".

Adding words
    Add the word or phrase, written naturally, to the tuple for its category and
    language below (``<CATEGORY>_EN``, ``_HINGLISH``, ``_HI``, ``_BN``); it is
    normalised like the text. Prefer a stem that matches its inflections, and a
    short Devanagari/Bengali stem only when it is not part of unrelated words
    (e.g. "लेट" is inside "चॉकलेट"). A keyword must not appear in two
    categories; the module refuses to import if it does and names the keyword.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Mapping

CATEGORIES: tuple[str, ...] = (
    "delivery",
    "stock",
    "payment",
    "website",
    "account",
    "product_quality",
    "returns",
    "wait_time",
    "other",
)

# Tie-break order, first wins (see the module docstring for why).
PRIORITY: tuple[str, ...] = (
    "returns",
    "payment",
    "account",
    "stock",
    "website",
    "product_quality",
    "delivery",
    "wait_time",
)

OTHER = "other"

# --- English ---------------------------------------------------------------

DELIVERY_EN = (
    "deliver", "arriv", "ship$", "ships$", "shipping", "shipment", "shipped", "dispatch",
    "courier", "track", "parcel", "package", "in transit", "late$", "delay",
    "not received", "not recieved", "haven't received", "didn't receive", "never received",
    "never came", "still not here", "where is my order", "where's my order",
    "waiting for my order", "waiting for the order", "waiting for my parcel",
    "waiting for my package", "waiting for delivery", "postman",
)
STOCK_EN = (
    "stock", "sold out", "unavailable", "not available", "no longer available",
    "isn't available", "wasn't available", "weren't available", "missing item", "item missing",
    "items missing", "items were missing", "missing from", "substitut", "backorder",
    "back order", "oos$", "ran out", "run out",
)
PAYMENT_EN = (
    "payment", "pay$", "paid", "paying", "charged", "charge$", "charges$", "charging me",
    "double charg", "overcharg", "card$", "cards$", "credit card", "debit card", "upi$",
    "gpay", "google pay", "paytm", "phonepe", "net banking", "netbanking", "bank",
    "deduct", "debited", "money", "transaction", "billing", "billed", "bill$", "invoice",
    "wallet", "declined", "cash on delivery", "cod$", "emi$",
)
WEBSITE_EN = (
    "website", "web site", "webpage", "site$", "sites$", "page", "cart$", "carts$", "basket",
    "checkout", "app$", "apps$", "crash", "error", "bug$", "bugs$", "glitch", "loading",
    "load$", "loads$", "server", "browser", "button", "link$", "links$", "emptied",
    "404$", "500$", "screen", "froze", "freez", "timed out", "timeout",
)
ACCOUNT_EN = (
    "account", "login", "log in", "logged", "log on", "logon", "sign in", "signin",
    "signed in", "signed out", "sign up", "signup", "password", "otp$", "username",
    "user name", "profile", "order not visible", "not visible", "can't see my order",
    "cannot see my order", "don't see my order", "order not showing", "order isn't showing",
    "orders not showing", "order history", "locked out", "verif",
)
PRODUCT_QUALITY_EN = (
    "broken", "broke$", "damag", "defect", "faulty", "stale", "expired", "expiry", "taste",
    "tasting", "bitter", "sour$", "rancid", "leak", "crack", "torn$", "ripped", "spoil",
    "rotten", "mould", "moldy", "mold$", "smell", "stink", "not working", "doesn't work",
    "don't work", "isn't working", "stopped working", "poor quality", "bad quality",
    "low quality", "quality", "dent$", "dented", "scratch", "shatter", "burnt", "fake",
    "counterfeit",
)
RETURNS_EN = (
    "refund", "return", "replace", "exchange", "money back", "send back", "send it back",
    "sent back", "sent it back", "take back", "take it back", "reimburs", "rma$", "store credit",
)
WAIT_TIME_EN = (
    "waiting", "wait$", "waited", "no response", "no reply", "no answer", "not responding",
    "not replying", "not answering", "nobody", "no one", "noone", "reply", "replied",
    "replies", "response", "respond", "unanswered", "ignor", "on hold", "hold$", "hours$",
    "hrs$", "minutes$", "mins$", "call back", "callback", "call me back",
)

# --- Hindi in Latin script ("Hinglish") -------------------------------------

DELIVERY_HINGLISH = (
    "nahi aaya", "nahi aya", "nahi aayi", "nahi aai", "nahi ayi", "nhi aaya", "nhi aya",
    "nhi aayi", "nahin aaya", "nahin aayi", "aaya nahi", "aayi nahi", "pahunch", "pahuch",
    "kab aayega", "kab ayega", "kab aaega", "kab aayegi", "kab milega", "der se", "der ho",
    "deri$",
)
STOCK_HINGLISH = (
    "khatam", "khatm", "khtm", "uplabdh nahi", "available nahi", "gayab",
)
PAYMENT_HINGLISH = (
    "paisa", "paise", "pese", "rupaye", "rupay", "rupees", "rs$", "kat gaya", "kat gaye",
    "kat gya", "kat gye", "kat liya", "kaat liya", "kata$", "kate$", "cut gaya", "cut gaye",
    "double",
)
WEBSITE_HINGLISH = (
    "khali", "khaali", "khul nahi", "nahi khul", "load nahi", "hang ho",
)
ACCOUNT_HINGLISH = (
    "khata", "khate", "dikh nahi", "nahi dikh", "dikhai nahi", "nahi dikhai",
)
PRODUCT_QUALITY_HINGLISH = (
    "toot gay", "toota$", "tooti$", "toote$", "tut gay", "tut gy", "tuta$", "tuti$", "tute$",
    "kharab", "kharaab", "khrab", "kadwa", "kadva", "kadvi", "kadwi", "ganda", "gandi",
    "sada hua", "sadi hui", "fata$", "fati$", "phata", "phati", "fat gaya", "phat gaya",
    "chal nahi", "kaam nahi kar", "kam nahi kar", "swad", "swaad", "bekar", "bekaar", "nakli",
)
RETURNS_HINGLISH = (
    "wapas", "vapas", "wapis", "vapis", "wapsi", "vapsi", "badal", "badla", "badli", "badle",
    "lauta",
)
WAIT_TIME_HINGLISH = (
    "jawab", "javab", "jwab", "reply nahi", "response nahi", "intezaar", "intezar", "intzar",
    "intajar", "intjar", "ghante", "ghanton", "ghanto", "nahi utha", "utha nahi",
    "uthaya nahi", "sun nahi", "nahi sun",
)

# --- Hindi (Devanagari) ------------------------------------------------------

DELIVERY_HI = (
    "डिलीवर", "डिलिवर", "डिलेवर", "पहुंच", "पहुच", "नहीं आया", "नहीं आई", "नहीं आए",
    "नहीं आयी", "नही आया", "नही आई", "आया नहीं", "आई नहीं", "कूरियर", "कुरियर", "शिपिंग",
    "शिपमेंट", "ट्रैक", "देरी", "देर से", "देर हो", "डिस्पैच", "कब आएगा", "कब आएगी",
    "कब आयेगा", "कब आयेगी", "कब मिलेगा", "पार्सल", "ऑर्डर नहीं मिला", "सामान नहीं मिला",
)
STOCK_HI = (
    "स्टॉक", "स्टाक", "स्टोक", "उपलब्ध नहीं", "अनुपलब्ध", "ख़त्म हो", "खतम", "सोल्ड आउट",
    "गायब", "मिसिंग",
)
PAYMENT_HI = (
    "पैसे कट", "पैसा कट", "पैसे काट", "पैसा काट", "रुपये कट", "रुपए कट", "कट गए", "कट गया",
    "कट गये", "पैसे", "पैसा", "रुपये", "रुपए", "भुगतान", "पेमेंट", "पेमेन्ट", "कार्ड",
    "यूपीआई", "यूपीआइ", "डेबिट", "क्रेडिट", "चार्ज कर", "चार्ज किया", "चार्ज हो", "चार्ज लगा",
    "डबल चार्ज", "ट्रांजैक्शन", "ट्रांजेक्शन", "लेनदेन", "लेन-देन", "बैंक", "बिलिंग", "वॉलेट",
)
WEBSITE_HI = (
    "वेबसाइट", "वेब साइट", "साइट", "पेज", "कार्ट", "चेकआउट", "चेक आउट", "ऐप", "एप्प",
    "लोड", "एरर", "त्रुटि", "क्रैश", "खाली", "हैंग", "लिंक", "बटन", "सर्वर",
)
ACCOUNT_HI = (
    "खाता", "खाते", "अकाउंट", "एकाउंट", "अकाउन्ट", "अकॉउंट", "लॉगिन", "लॉग इन", "लॉगइन",
    "लोगिन", "साइन इन", "पासवर्ड", "ओटीपी", "प्रोफाइल", "नहीं दिख", "दिख नहीं",
    "दिखाई नहीं", "दिखा नहीं",
)
PRODUCT_QUALITY_HI = (
    "टूट", "टुट", "ख़राब", "डैमेज", "डेमेज", "डिफेक्ट", "फट गय", "फट गई", "फटा हु", "फटी हु",
    "फटे हु", "लीक", "बासी", "स्वाद", "कड़वा", "कड़वी", "बदबू", "एक्सपायर", "सड़ा", "सड़ी",
    "सड़े", "काम नहीं कर", "चल नहीं", "घटिया", "नकली", "क्वालिटी", "गुणवत्ता", "फफूंद",
)
RETURNS_HI = (
    "रिफंड", "रिफण्ड", "रीफंड", "वापस", "वापसी", "रिटर्न", "बदल", "एक्सचेंज", "रिप्लेस",
    "लौटा",
)
WAIT_TIME_HI = (
    "जवाब", "जवाब नहीं", "कोई उत्तर", "उत्तर नहीं", "रिप्लाई", "रिस्पॉन्स", "रिस्पांस",
    "इंतज़ार", "इंतेजार", "प्रतीक्षा", "घंट", "होल्ड", "नहीं उठा", "उठा नहीं", "उठाया नहीं",
    "सुन नहीं", "नहीं सुन", "कॉल बैक",
)

# --- Bengali -----------------------------------------------------------------

DELIVERY_BN = (
    "ডেলিভার", "ডেলিভেরি", "আসেনি", "আসে নি", "আসেনাই", "এলো না", "এল না", "আসছে না",
    "আসলো না", "পৌঁছ", "পৌছ", "কুরিয়ার", "শিপিং", "ট্র্যাক", "দেরি", "দেরী", "কবে আসবে",
    "কবে পাব", "ডিসপ্যাচ", "পার্সেল", "অর্ডার পাইনি", "জিনিস পাইনি", "প্রোডাক্ট পাইনি",
)
STOCK_BN = (
    "স্টক", "অনুপলব্ধ", "উপলব্ধ নয়", "উপলব্ধ নেই", "পাওয়া যাচ্ছে না", "শেষ হয়ে গেছে",
    "সোল্ড আউট", "মিসিং",
)
PAYMENT_BN = (
    "টাকা", "কেটে নিয়েছে", "কেটে নিল", "কেটেছে", "কেটে গেছে", "পেমেন্ট", "পেমেণ্ট",
    "পেমেন্ট", "কার্ড", "ইউপিআই", "চার্জ করে", "চার্জ করা", "চার্জ কেটে", "ব্যাংক", "ব্যাঙ্ক",
    "লেনদেন", "ট্রানজ্যাকশন", "বিলিং", "ওয়ালেট",
)
WEBSITE_BN = (
    "ওয়েবসাইট", "ওয়েব সাইট", "সাইট", "পেজ", "পেইজ", "কার্ট", "চেকআউট", "অ্যাপ", "লোড",
    "এরর", "ক্র্যাশ", "খালি", "হ্যাং", "লিংক", "বাটন", "সার্ভার",
)
ACCOUNT_BN = (
    "অ্যাকাউন্ট", "একাউন্ট", "এ্যাকাউন্ট", "অ্যাকাউণ্ট", "লগইন", "লগ ইন", "সাইন ইন",
    "পাসওয়ার্ড", "ওটিপি", "প্রোফাইল", "দেখা যাচ্ছে না", "দেখাচ্ছে না", "দেখতে পাচ্ছি না",
)
PRODUCT_QUALITY_BN = (
    "ভাঙা", "ভাঙ্গা", "ভেঙে", "ভেঙ্গে", "নষ্ট", "খারাপ", "ড্যামেজ", "ত্রুটি", "বাসি", "স্বাদ",
    "তেতো", "লিকেজ", "লিক হ", "লিক কর", "ফুটো", "ছেঁড়া", "পচা", "পচে", "মেয়াদ", "এক্সপায়ার",
    "কাজ করছে না", "কাজ করে না", "ফাটা", "ফেটে", "নকল",
)
RETURNS_BN = (
    "ফেরত", "রিফান্ড", "রিফান্ড", "রিটার্ন", "বদল", "এক্সচেঞ্জ", "রিপ্লেস", "পাল্টে",
)
WAIT_TIME_BN = (
    "উত্তর দি", "উত্তর দে", "উত্তর পা", "উত্তর নেই", "কোনো উত্তর", "কোন উত্তর", "সাড়া",
    "জবাব", "রিপ্লাই", "রেসপন্স", "অপেক্ষা", "ঘণ্টা", "ঘন্টা", "হোল্ড", "ধরছে না", "ধরেনি",
)

KEYWORDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "delivery": {"en": DELIVERY_EN, "hi-Latn": DELIVERY_HINGLISH, "hi": DELIVERY_HI, "bn": DELIVERY_BN},
    "stock": {"en": STOCK_EN, "hi-Latn": STOCK_HINGLISH, "hi": STOCK_HI, "bn": STOCK_BN},
    "payment": {"en": PAYMENT_EN, "hi-Latn": PAYMENT_HINGLISH, "hi": PAYMENT_HI, "bn": PAYMENT_BN},
    "website": {"en": WEBSITE_EN, "hi-Latn": WEBSITE_HINGLISH, "hi": WEBSITE_HI, "bn": WEBSITE_BN},
    "account": {"en": ACCOUNT_EN, "hi-Latn": ACCOUNT_HINGLISH, "hi": ACCOUNT_HI, "bn": ACCOUNT_BN},
    "product_quality": {
        "en": PRODUCT_QUALITY_EN,
        "hi-Latn": PRODUCT_QUALITY_HINGLISH,
        "hi": PRODUCT_QUALITY_HI,
        "bn": PRODUCT_QUALITY_BN,
    },
    "returns": {"en": RETURNS_EN, "hi-Latn": RETURNS_HINGLISH, "hi": RETURNS_HI, "bn": RETURNS_BN},
    "wait_time": {"en": WAIT_TIME_EN, "hi-Latn": WAIT_TIME_HINGLISH, "hi": WAIT_TIME_HI, "bn": WAIT_TIME_BN},
}

# --- Normalisation -------------------------------------------------------------

LATIN, DEVANAGARI, BENGALI = "latin", "devanagari", "bengali"

# Letters and digits that make up a Latin word once the text is casefolded.
_LATIN_WORD = "0-9a-z\u00df-\u024f"
_SCRIPT_CHARS = {
    LATIN: re.compile(f"[{_LATIN_WORD}]"),
    DEVANAGARI: re.compile("[\u0900-\u097f]"),
    BENGALI: re.compile("[\u0980-\u09ff]"),
}
_APOSTROPHES = dict.fromkeys(map(ord, "'\u2018\u2019\u02bc`\u00b4"), None)
_DEVANAGARI_NUKTA = "\u093c"
_DEVANAGARI_CHANDRABINDU = "\u0901"
_DEVANAGARI_ANUSVARA = "\u0902"
_WHOLE_WORD_MARK = "$"


def _normalise(text: str) -> str:
    # Decompose first so the nukta of precomposed letters (क़, ज़, ड़) can be dropped.
    text = unicodedata.normalize("NFD", text).casefold().translate(_APOSTROPHES)
    text = text.replace(_DEVANAGARI_NUKTA, "").replace(_DEVANAGARI_CHANDRABINDU, _DEVANAGARI_ANUSVARA)
    kept = []
    for char in text:
        kind = unicodedata.category(char)[0]
        if kind in "LMN":
            kept.append(char)
        elif kind == "C" and not char.isspace():
            continue  # zero-width joiners and other format characters: invisible, not separators
        else:
            # Punctuation, symbols and spaces separate words. The danda (।) is punctuation,
            # so Bengali text ending in one is not mistaken for Devanagari.
            kept.append(" ")
    return unicodedata.normalize("NFC", " ".join("".join(kept).split()))


def _script_of_keyword(keyword: str) -> str:
    scripts = {script for script, chars in _SCRIPT_CHARS.items() if chars.search(keyword)}
    if len(scripts) != 1:
        raise ValueError(
            f"classify keyword {keyword!r} must be written in exactly one of Latin, Devanagari "
            f"or Bengali script (found {sorted(scripts) or 'none'})"
        )
    return scripts.pop()


def _compile_keywords(
    keywords: Mapping[str, Mapping[str, tuple[str, ...]]],
) -> tuple[dict[str, re.Pattern[str]], dict[str, str]]:
    """One leftmost-longest pattern per script, and which category each matched keyword names."""
    category_of: dict[str, str] = {}
    whole_words: dict[str, set[str]] = {LATIN: set(), DEVANAGARI: set(), BENGALI: set()}
    prefixes: dict[str, set[str]] = {LATIN: set(), DEVANAGARI: set(), BENGALI: set()}
    for category, by_language in keywords.items():
        if category not in CATEGORIES or category == OTHER:
            raise ValueError(f"classify keywords given for unknown category {category!r}; expected one of {CATEGORIES[:-1]}")
        for language, words in by_language.items():
            for raw in words:
                whole = raw.endswith(_WHOLE_WORD_MARK)
                keyword = _normalise(raw.removesuffix(_WHOLE_WORD_MARK))
                if not keyword:
                    raise ValueError(f"classify keyword {raw!r} ({category}, {language}) is empty once normalised")
                earlier = category_of.setdefault(keyword, category)
                if earlier != category:
                    raise ValueError(
                        f"classify keyword {raw!r} is listed under both {earlier!r} and {category!r}; "
                        "keep it in one category"
                    )
                script = _script_of_keyword(keyword)
                if whole and script != LATIN:
                    raise ValueError(
                        f"classify keyword {raw!r}: the whole-word mark {_WHOLE_WORD_MARK!r} is for Latin "
                        "keywords; Devanagari and Bengali keywords always match as substrings"
                    )
                (whole_words if whole else prefixes)[script].add(keyword)

    patterns = {}
    for script in (LATIN, DEVANAGARI, BENGALI):
        # A prefix keyword also matches the whole word, so it makes a "$" twin redundant.
        entries = [(word, False) for word in prefixes[script]]
        entries += [(word, True) for word in whole_words[script] - prefixes[script]]
        # Longest first: the regex engine takes the first alternative that matches at a position.
        entries.sort(key=lambda entry: (-len(entry[0]), entry[0]))
        if script == LATIN:
            alternatives = [re.escape(word) + (f"(?![{_LATIN_WORD}])" if whole else "") for word, whole in entries]
            patterns[script] = re.compile(f"(?<![{_LATIN_WORD}])(?:{'|'.join(alternatives)})")
        else:
            patterns[script] = re.compile("|".join(re.escape(word) for word, _ in entries))
    return patterns, category_of


_PATTERNS, _CATEGORY_OF = _compile_keywords(KEYWORDS)


def category_scores(text: str | None) -> dict[str, int]:
    """Matched keywords per category (categories with none are left out)."""
    if not text:
        return {}
    normalised = _normalise(text)
    scores: Counter[str] = Counter()
    for script, chars in _SCRIPT_CHARS.items():
        if chars.search(normalised):
            for match in _PATTERNS[script].finditer(normalised):
                scores[_CATEGORY_OF[match.group()]] += 1
    return dict(scores)


def classify(text: str | None, language: str | None = None) -> str:
    """The complaint category of `text`; "other" when nothing matches or text is empty/None.

    `language` ("en", "hi", "bn", ...) is accepted but never changes the answer: the
    keyword sets follow the scripts in the text, because tickets tagged "en" are often
    written in Hinglish or mix in Devanagari or Bengali.
    """
    scores = category_scores(text)
    if not scores:
        return OTHER
    return max(PRIORITY, key=lambda category: (scores.get(category, 0), -PRIORITY.index(category)))


def ticket_category(record: Mapping) -> str:
    """The complaint category of a support event: its ``category`` field, or else its text classified.

    The one definition both sides use: ``complaint_spike`` counts a ticket under
    what this gives for the ``ticket_opened`` event that opened it, and the
    ClickHouse sink stores it with every support event (``complaint_category``),
    which the analysts' hourly complaint counts group by. An empty ``category``
    counts as missing.
    """
    return record.get("category") or classify(record.get("text"), record.get("language"))
