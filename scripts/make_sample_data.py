"""Write newsclf's small sample data set (synthetic news, four topics) from templates.

The rows are made up here from templates and word lists, so the project can ship them; they
carry the same quirks as AG News (HTML entities without their ampersand, literal backslashes,
runs of spaces) so that the quick start exercises the text cleaning too.

    python scripts/make_sample_data.py            # writes src/newsclf/sample_data/{train,test}.csv
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "newsclf" / "sample_data"

PLACES = [
    "Brazil",
    "Kenya",
    "Japan",
    "Germany",
    "India",
    "Canada",
    "Egypt",
    "Norway",
    "Chile",
    "Vietnam",
    "Poland",
    "Ghana",
    "Peru",
    "Turkey",
    "Australia",
    "Mexico",
    "Greece",
    "Iraq",
]
CITIES = [
    "Nairobi",
    "Oslo",
    "Lima",
    "Hanoi",
    "Cairo",
    "Warsaw",
    "Accra",
    "Athens",
    "Baghdad",
    "Ottawa",
    "Santiago",
    "Ankara",
    "Berlin",
    "Tokyo",
    "Delhi",
    "Sydney",
]
PEOPLE = [
    "Anna Weber",
    "Luis Ortega",
    "Mei Tanaka",
    "Kwame Mensah",
    "Sara Lind",
    "Omar Haddad",
    "Priya Nair",
    "Tom Keller",
    "Ivan Petrov",
    "Grace Okafor",
    "Jonas Berg",
    "Elena Rossi",
]
TEAMS = [
    "Rovers",
    "United",
    "Falcons",
    "Tigers",
    "Mariners",
    "Comets",
    "Wolves",
    "Rangers",
    "Sharks",
    "Titans",
    "Eagles",
    "Pirates",
]
COMPANIES = [
    "Northwind Corp",
    "Acme Holdings",
    "Globex",
    "Initech",
    "Vandelay Industries",
    "Stark Freight",
    "Umbrella Foods",
    "Wayne Steel",
    "Hooli",
    "Soylent Energy",
]
TECH = [
    "Hooli",
    "Pied Piper",
    "Cyberdyne",
    "Aperture Labs",
    "Tyrell Systems",
    "Massive Dynamic",
    "Nakatomi Chips",
    "Gringotts Cloud",
]

TEMPLATES = {
    "World": [
        (
            "{place} holds snap election after coalition collapses",
            "Voters in {place} go to the polls on Sunday after the governing coalition fell apart "
            "over a dispute about the budget, officials in {city} said.",
        ),
        (
            "Peace talks resume in {city}",
            "Negotiators from {place} and its neighbours met in {city} for a second round of talks "
            "aimed at ending the border conflict, diplomats said.",
        ),
        (
            "Floods displace thousands in {place}",
            "Heavy rains have forced thousands of families from their homes in {place}, and aid "
            "agencies warned of food shortages in the coming weeks.",
        ),
        (
            "UN envoy urges calm as protests spread in {city}",
            "The United Nations envoy called for restraint after protesters clashed with police in "
            "{city} for a third night, quot;We need dialogue,quot; he said.",
        ),
        (
            "{place} president visits {city} for summit",
            "The president of {place} arrived in {city} for a regional summit on security and "
            "refugees, the foreign ministry said in a statement.",
        ),
        (
            "Ceasefire holds along disputed border",
            "A fragile ceasefire between {place} and rebel forces appeared to hold on Tuesday, "
            "although both sides accused the other of violations near {city}.",
        ),
    ],
    "Sports": [
        (
            "{team} beat {team2} {score} to stay top",
            "{person} scored twice as the {team} beat the {team2} {score} on Saturday to keep "
            "their lead at the top of the league table.",
        ),
        (
            "{person} wins marathon in record time",
            "{person} won the {city} marathon in a course record, pulling away from the field "
            "over the final five kilometres.",
        ),
        (
            "Coach sacked after {team} slump",
            "The {team} dismissed their head coach after a run of six defeats left the club "
            "fighting relegation, the club#39;s chairman said.",
        ),
        (
            "{team} sign striker {person}",
            "The {team} completed the signing of striker {person} on a four-year contract, "
            "beating several rivals to the player#39;s signature.",
        ),
        (
            "{person} reaches tennis final in {city}",
            "{person} reached the final of the {city} Open with a straight-sets win and will "
            "face the defending champion on Sunday.",
        ),
        (
            "Injury rules {person} out of championship",
            "{person} will miss the world championship after tearing a hamstring in training, "
            "the national federation confirmed.",
        ),
    ],
    "Business": [
        (
            "{company} profit rises {pct} percent",
            "{company} reported a {pct} percent rise in quarterly profit as sales grew in "
            "{place}, beating analysts#39; forecasts. Shares rose in early trading.",
        ),
        (
            "{company} to cut {num} jobs",
            "{company} said it would cut {num} jobs and close two plants to reduce costs, "
            "sending its shares lower on Wall Street.",
        ),
        (
            "Oil prices climb on supply worries",
            "Crude oil prices rose to \\$ {num} a barrel on concerns about supplies from {place}, "
            "lifting energy stocks.",
        ),
        (
            "{company} agrees to buy rival for \\${num} million",
            "{company} agreed to buy a smaller rival for \\${num} million in cash, the latest "
            "deal in a consolidating industry.",
        ),
        (
            "Central bank of {place} raises interest rates",
            "The central bank of {place} raised its benchmark interest rate by a quarter point to "
            "curb inflation, the third increase this year.",
        ),
        (
            "Retail sales fall in {place}",
            "Retail sales in {place} fell {pct} percent last month as consumers cut back on "
            "spending, government figures showed.",
        ),
    ],
    "Sci/Tech": [
        (
            "{tech} unveils faster chip",
            "{tech} unveiled a new processor that it says is {pct} percent faster than its "
            "predecessor while using less power.",
        ),
        (
            "Scientists map genome of rare frog",
            "Researchers in {city} have sequenced the genome of a rare frog, a step that could "
            "help explain how amphibians regrow lost limbs.",
        ),
        (
            "{tech} patches browser security hole",
            "{tech} released a patch for a security flaw in its web browser that could let "
            "attackers take control of a computer, the company said.",
        ),
        (
            "Space probe sends back images of comet",
            "A space probe launched by {place} has sent back the first close-up images of a "
            "comet, scientists said at a briefing in {city}.",
        ),
        (
            "{tech} launches online music service",
            "{tech} launched an online music service offering {num} thousand songs for download, "
            "challenging established rivals.",
        ),
        (
            "New software speeds up search for {tech} users",
            "{tech} released desktop search software that indexes e-mail and documents, "
            "&lt;b&gt;quot;finding files in seconds&lt;/b&gt;quot;, according to the company.",
        ),
    ],
}


def fill(template: str, rng: random.Random) -> str:
    teams = rng.sample(TEAMS, 2)
    return template.format(
        place=rng.choice(PLACES),
        city=rng.choice(CITIES),
        person=rng.choice(PEOPLE),
        team=teams[0],
        team2=teams[1],
        company=rng.choice(COMPANIES),
        tech=rng.choice(TECH),
        score=f"{rng.randint(1, 5)}-{rng.randint(0, 3)}",
        pct=rng.randint(2, 40),
        num=rng.randint(20, 900),
    )


def rows(count_per_topic: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for label, templates in TEMPLATES.items():
        for _ in range(count_per_topic):
            title, description = rng.choice(templates)
            description = fill(description, rng)
            if rng.random() < 0.1:
                description = description.replace(", ", ",  ", 1)  # a run of spaces
            if rng.random() < 0.1:
                description = description.replace(" ", "\\", 1)  # a literal backslash
            out.append({"label": label, "title": fill(title, rng), "description": description})
    rng.shuffle(out)
    return out


def write(path: Path, data: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["label", "title", "description"])
        writer.writeheader()
        writer.writerows(data)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "train.csv", rows(80, seed=1))
    write(OUT / "test.csv", rows(25, seed=2))
    print(f"wrote {OUT}/train.csv (320 rows) and test.csv (100 rows)")
