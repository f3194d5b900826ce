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
