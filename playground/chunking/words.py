"""Word lists the chunker decides with: what a `.` after a word means, and where a cut that
is not at a boundary (deadline, underrun, max_chars) sounds least wrong.

All entries are lowercase and without their period.
"""

from __future__ import annotations

# Never a sentence end: they lead into a name or what follows ("Dr. Smith", "vs. Celtics",
# "St. Louis", "Mt. Everest"), so no cut of any kind comes right after them.
TITLES = frozenset(
    "dr mr mrs ms mx messrs mme mlle prof rev hon gen gov sen rep pres lt col maj capt cmdr adm sgt cpl pvt "
    "det supt insp atty fr st mt ft vs".split()
)

# Abbreviations that may also end a sentence ("... at Acme Inc." / "booked for Nov. 3"): the next
# visible character decides. A digit, a lowercase letter or a comma goes on ("Nov. 3", "approx. two",
# "Inc., which"); anything else ends the sentence ("No. I do not").
DATE_ABBREVIATIONS = frozenset(
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun".split()
)
ABBREVIATIONS = DATE_ABBREVIATIONS | frozenset(
    # units and measures
    "sec secs min mins hr hrs wk wks mo mos yr yrs lb lbs oz yd yds mi in sq cu gal qt pt tsp tbsp kg mg km cm mm ml "
    # business and everyday
    "no nos approx est etc inc ltd corp co bros jr sr dept div ext tel fax apt ste bldg fl ave blvd rd hwy ln pl "
    "pkwy ct sq cir ter trl expy fwy "
    "acct ref attn qty pkg misc govt intl natl assn assoc univ inst vol pp pg ch fig eq ed eds al cf ca "
    "rm flr incl excl avg tbd".split()
)

# Full month and weekday names: "March | 3" or "Friday | the 5th" is no place for a cut either.
DATE_WORDS = frozenset(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday".split()
)

# Words after which a number and "." is a list marker, not a sentence end ("and 2. wait", "Step 1. Unplug");
# so are a line start, ": , ; —" and a sentence end.
LIST_LEADS = frozenset(
    "and or then plus also next finally lastly first second third step steps option options item tip point "
    "part phase stage rule method question".split()
)

# Words a new phrase starts with: a cut right before one of them sounds like a pause a speaker makes
# ("You filled out a Facebook ad | about creating ...").
PHRASE_STARTERS = frozenset(
    "and but or nor so yet because since although though while whereas when whenever where wherever "
    "which who whom whose if unless until unlike once then after before about with without within for from "
    "into onto through throughout during across against among between toward towards under over via at "
    "in on by like".split()
)

# Words that lean on the next one: a chunk should not end with them ("He's a bit of a | guy").
FORWARD_BINDING = frozenset(
    "a an the to of and or but nor so if as at by for from in into on onto with about than that this these "
    "those my your our their his her its whose which who whom what when where why how i we they he she "
    "is are was were be been being am will would can could should shall may might must do does did have "
    "has had not no very more most less least some any each every all both either neither such just only "
    "also really too quite rather much many few several own same other another per via let let's i'm "
    "i'll i'd we're we'll they're you're it's that's there's here's".split()
)

# Words a `.` may follow at a sentence end, and hardly ever the first part of a domain, a file name or
# an e-mail address ("example.com", "report.pdf", "jane.doe@"): pronouns, adverbs and time words.
# A `.` after one of them is confirmed when it arrives instead of waiting for the next token. Words
# that often are first labels ("it.desk@", "help.example.com", "info.", "www.") are not here; a few that
# rarely are in a reply and often end a sentence are ("today.com", "me.com", "now.gg" are real, but
# "It ships today." is what an agent says).
SENTENCE_FINAL = frozenset(
    "you me them him us this that these those here now today yes sure fine right myself yourself yourselves "
    "ourselves themselves himself herself itself there then tonight tomorrow yesterday soon again too also "
    "either neither yet already anymore anyway anyhow please thanks though instead ago later earlier before after away together "
    "alone ever never always once twice okay yeah much more most less enough else morning afternoon "
    "evening night week weeks month months year years minute minutes hour hours day days moment while "
    "really exactly definitely certainly quickly shortly directly immediately actually usually probably "
    "finally absolutely completely properly correctly currently recently easily possible available "
    "sorry welcome".split()
)

# Dotted abbreviations that always lead into what follows ("e.g. Chrome", "i.e. Monday"); other dotted
# ones may end a sentence ("... at 5 p.m. Then", "... in the U.S. We ...").
LEADING_DOTTED = frozenset("e.g i.e a.k.a viz".split())

# A capitalized word after an abbreviation that starts a sentence: pronouns, determiners, conjunctions,
# auxiliaries, question words, interjections, sentence adverbs and the imperatives an agent opens with
# ("... at 5 p.m. Then we", "... Inc. They will", "... 9 p.m. See you"). After a contraction its first
# part counts ("We'll" is "we").
SENTENCE_OPENERS = frozenset(
    "i we you they he she it this that these those there here the a an our your my their his her its each every "
    "some any all no both and but or so if when while once after before since because although though then also "
    "just now please thanks thank sorry yes okay ok sure great perfect alright hi hello unfortunately fortunately "
    "however meanwhile otherwise instead still plus finally first next additionally alternatively usually "
    "typically generally currently normally honestly actually basically luckily hopefully ideally what how why "
    "where who which whether is are was were do does did can could would will should might must shall have has "
    "had don didn doesn won isn aren wasn weren couldn wouldn shouldn let see call visit feel try make check go "
    "press tap click bring keep give remember note enjoy take use reply text email contact ask tell head expect "
    "allow wait look hold stop start open enter select choose pick at in on for from with by to during as within "
    "unless until".split()
)

# Capitalized words that go on after an abbreviation ("Park Ave. South", "Main St. Suite 200", "King Jr. Drive",
# "5 p.m. Eastern"); so do full date words, an acronym ("11 a.m. PT") and another abbreviation ("Jr. Blvd.").
CONTINUATIONS = frozenset(
    "suite ste apt apartment unit floor fl room rm building bldg north south east west n s e w ne nw se sw "
    "street avenue road drive boulevard lane way court place parkway highway square plaza circle terrace "
    "eastern pacific central mountain atlantic standard daylight time zone".split()
)

# Roman numerals a list may be numbered with ("i. Reinstall the driver. ii. Roll back").
ROMAN_NUMERALS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii")

# Words the next one always belongs to: "a | box", "$15 per | person", "et | al."
ALWAYS_BINDING = frozenset("a an the per et".split())

# Words that join two halves of one unit when they follow a number, an abbreviation or a title
# ("5 to | 7 days", "Mr. and | Mrs.", "Mon. through | Sat.", "16 x | 12", "$1,150 of | $2,000").
CONNECTORS = frozenset("and or to through thru till until of x by vs & from".split())

# Names of numbered things: the number after them belongs to them ("Suite | 200", "Gate | 14").
NUMBERED_LABELS = frozenset(
    "suite ste apt unit room rm floor fl gate terminal platform seat row flight exit lot level building bldg "
    "section chapter version model pier dock bay aisle ward track route ext no".split()
)

# Units and currencies written without a period: "300 MB" is a number and its unit, no code that binds
# the next word ("GB29 | NWBK", "iOS | 17.4").
UNITS = frozenset("am pm kb mb gb tb kbps mbps gbps hz khz mhz ghz kwh mah".split())

# Words between a number and its unit: "3 business | days", "12 more | minutes".
QUANTITY_MODIFIERS = frozenset(
    "business working calendar school more extra additional full whole consecutive straight separate other "
    "square cubic fluid".split()
)

# Abbreviations a capitalized word may continue ("Park Ave. South", "King Jr. Blvd.", "est. Tuesday",
# "incl. VAT"; "Main St. Suite 200": "St." after a name in mid-sentence is a street, "Dr." stays a
# title): before a capital, the whole next word decides. After the others (units, "etc.", "Inc.") a
# capital starts a sentence: "7 lbs. We", "20 min. Would".
STREET_TYPES = frozenset("st ave blvd rd ln hwy pl pkwy ct sq cir ter trl expy fwy".split())
CAPITALIZED_CONTINUATION = STREET_TYPES | frozenset(
    "ste apt bldg fl rm jr sr approx est incl excl ca ref attn ext tel".split()
)
