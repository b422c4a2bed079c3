#!/usr/bin/env python3
"""Generates the example datasets under experiments/data/ (stdlib only, seeded).

    python3 experiments/generate_data.py          # rewrites experiments/data/*/*.jsonl

Four small tasks, all invented here from word lists in this file:
  topics/   classification with label words: a news-style sentence -> sports | business |
            science | weather (completion format)
  extract/  structured extraction: a sentence about a person -> {"name", "age", "city"}
            as one line of JSON (instruction format)
  qa/       short answers: a few facts about where things are -> the place asked for
            (chat format)
  topics_pref/  preference pairs on the topics task: the chosen completion is the label
            word; the rejected one is a wrong label, or the right label in a rambling
            sentence (preference format, for experiments/dpo.yaml)
Train and test are drawn from one seeded stream and de-duplicated, so no test example
occurs in train. The output is deterministic: running the script again gives the same
bytes.
"""
import json
import os
import random

SEED = 20261124
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------- topics
TOPICS = {
    "sports": {
        "subj": ["The home team", "The veteran striker", "A young sprinter", "The national squad",
                 "The goalkeeper", "Our tennis champion", "The rowing crew", "The underdogs",
                 "The marathon winner", "The cycling team", "The league leaders", "The coach"],
        "verb": ["won the final", "scored twice in the second half", "broke the course record",
                 "lost on penalties", "signed a three-year contract", "was injured in training",
                 "qualified for the playoffs", "celebrated a late equaliser",
                 "set a new personal best", "drew with their rivals"],
        "tail": ["on Saturday.", "in front of a sold-out stadium.", "after extra time.",
                 "despite the heavy pressure.", "at the regional championship.",
                 "in the opening match of the season.", "to the delight of the fans."],
    },
    "business": {
        "subj": ["The retailer", "A local startup", "The bank", "Shares of the carmaker",
                 "The airline", "The software company", "Investors", "The central bank",
                 "The supermarket chain", "A family-owned brewery", "The shipping firm",
                 "Quarterly profits"],
        "verb": ["reported higher revenue", "announced job cuts", "raised interest rates",
                 "agreed to a merger", "fell sharply", "opened twelve new stores",
                 "missed its earnings forecast", "secured new funding", "cut its prices",
                 "expanded into new markets"],
        "tail": ["this quarter.", "after a difficult year.", "according to analysts.",
                 "as demand slowed.", "on the stock exchange.", "despite rising costs.",
                 "in its annual report."],
    },
    "science": {
        "subj": ["Astronomers", "A team of biologists", "The research lab", "Physicists",
                 "Chemists at the university", "The space agency", "Geologists",
                 "Marine scientists", "A new study", "The telescope", "Researchers",
                 "The probe"],
        "verb": ["discovered a distant planet", "sequenced the genome of a rare frog",
                 "measured a tiny particle", "observed a new species of coral",
                 "found traces of water", "published results on cell ageing",
                 "detected gravitational waves", "mapped an ancient fault line",
                 "tested a new vaccine candidate", "captured images of a comet"],
        "tail": ["using new instruments.", "in a peer-reviewed paper.", "after years of data.",
                 "with surprising precision.", "at the observatory.", "in the deep ocean.",
                 "during the experiment."],
    },
    "weather": {
        "subj": ["Forecasters", "The coastal region", "The capital", "Farmers in the valley",
                 "The northern hills", "Residents", "The weather service", "The islands",
                 "Mountain villages", "The city centre", "Commuters", "The lowlands"],
        "verb": ["expect heavy rain", "saw the first snow", "braced for strong winds",
                 "recorded the hottest day", "issued a storm warning", "reported thick fog",
                 "had a week of sunshine", "faced flooding", "woke up to frost",
                 "prepared for a heatwave"],
        "tail": ["this weekend.", "overnight.", "by Tuesday.", "for the third day in a row.",
                 "as temperatures dropped.", "along the coast.", "later this week."],
    },
}
TOPIC_PROMPT = ("Classify the topic of this sentence as sports, business, science or weather. "
                "Answer with one word.\n\n{sentence}")


def topic_example(rng):
    label = rng.choice(sorted(TOPICS))
    t = TOPICS[label]
    sentence = f"{rng.choice(t['subj'])} {rng.choice(t['verb'])} {rng.choice(t['tail'])}"
    return {"prompt": TOPIC_PROMPT.format(sentence=sentence), "completion": label}


RAMBLE = ["I think the topic of this sentence is probably {label}.",
          "Well, looking at the sentence carefully, I would say it is about {label}.",
          "The answer is {label}, because the sentence talks about {label}.",
          "This one is about {label}. Let me know if you need anything else!"]


def topic_pref_example(rng):
    ex = topic_example(rng)
    label = ex["completion"]
    if rng.random() < 0.5:
        rejected = rng.choice([t for t in sorted(TOPICS) if t != label])
    else:
        rejected = rng.choice(RAMBLE).format(label=label)
    return {"prompt": ex["prompt"], "chosen": label, "rejected": rejected}


# --------------------------------------------------------------------------- extract
FIRST = ["Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Liam", "Sofia", "Chen", "Amara",
         "Lukas", "Nadia", "Omar", "Elena", "Tariq", "Ingrid", "Mateo", "Priya", "Hugo",
         "Zara", "Felix", "Yusuf", "Clara", "Ravi", "Lena"]
LAST = ["Lopez", "Berg", "Tanaka", "Silva", "Haddad", "Murphy", "Rossi", "Wei", "Okafor",
        "Novak", "Petrova", "Farouk", "Costa", "Khan", "Larsen", "Garcia", "Sharma", "Moreau",
        "Ali", "Weber", "Demir", "Fischer", "Iyer", "Schmidt"]
CITIES = ["Lisbon", "Oslo", "Osaka", "Recife", "Beirut", "Dublin", "Turin", "Chengdu", "Lagos",
          "Prague", "Kazan", "Cairo", "Porto", "Lahore", "Bergen", "Seville", "Pune", "Lyon",
          "Nairobi", "Leipzig", "Izmir", "Graz", "Chennai", "Bremen"]
EXTRACT_TEMPLATES = [
    "{name}, {age}, lives in {city}.",
    "{name} is {age} years old and works in {city}.",
    "After moving to {city}, {name} ({age}) opened a small bakery.",
    "At {age}, {name} still rides a bicycle through {city} every morning.",
    "Our new colleague {name} joins the {city} office; {name_first} is {age}.",
    "{city} resident {name}, aged {age}, won the chess tournament.",
    "Born and raised in {city}, {name} turned {age} last week.",
    "The interview was with {name}, a {age}-year-old teacher from {city}.",
]
EXTRACT_INSTRUCTION = ('Extract the person as JSON with the keys "name", "age" and "city".')


def extract_example(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name, age, city = f"{first} {last}", rng.randint(19, 88), rng.choice(CITIES)
    text = rng.choice(EXTRACT_TEMPLATES).format(name=name, name_first=first, age=age, city=city)
    out = json.dumps({"name": name, "age": age, "city": city})
    return {"instruction": EXTRACT_INSTRUCTION, "input": text, "output": out}


# -------------------------------------------------------------------------------- qa
THINGS = ["the red key", "the blue notebook", "the old camera", "the silver ring", "the map",
          "the umbrella", "the green scarf", "the wooden box", "the letter", "the torch",
          "the guitar", "the passport", "the tea tin", "the hammer", "the photo album"]
PLACES = ["the kitchen", "the garage", "the attic", "the garden shed", "the hallway",
          "the bedroom", "the cellar", "the office", "the bathroom", "the balcony",
          "the library", "the car"]
QA_SYSTEM = "Answer with the place only."


def qa_example(rng):
    k = rng.randint(2, 4)
    things = rng.sample(THINGS, k)
    places = [rng.choice(PLACES) for _ in range(k)]
    facts = " ".join(f"{t[0].upper() + t[1:]} is in {p}." for t, p in zip(things, places))
    i = rng.randrange(k)
    q = f"{facts}\nWhere is {things[i]}?"
    return {"messages": [{"role": "system", "content": QA_SYSTEM},
                         {"role": "user", "content": q},
                         {"role": "assistant", "content": places[i]}]}


# ---------------------------------------------------------------------------- output
def draw(rng, make, n_train, n_test):
    seen, train, test = set(), [], []
    while len(train) < n_train or len(test) < n_test:
        ex = make(rng)
        key = json.dumps(ex, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        (test if len(test) < n_test else train).append(ex)
    return train, test


def write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    tasks = [("topics", topic_example, 240, 80), ("extract", extract_example, 300, 80),
             ("qa", qa_example, 300, 80), ("topics_pref", topic_pref_example, 240, 80)]
    for i, (name, make, n_train, n_test) in enumerate(tasks):
        rng = random.Random(SEED + i)
        train, test = draw(rng, make, n_train, n_test)
        write(os.path.join(HERE, "data", name, "train.jsonl"), train)
        write(os.path.join(HERE, "data", name, "test.jsonl"), test)
        print(f"{name}: {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main()
