"""The retrieval demo's tenant handbook: facts about a made-up company that no model can know, and questions whose
right answers carry a phrase only the handbook gives, so a check can tell a grounded answer from a guess.

Used by `loraflow demo --retrieval` and the end-to-end tests on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass

# One file per topic, as a tenant's handbook folder would hold them.
DOCUMENTS = {
    "offices.md": """# Offices

The Harbor Lane office opens at 7:45 and closes at 18:30.
The guest wifi network at Harbor Lane is called Kestrel-Guest.
The Millbrook office is closed on Fridays; its staff work from home that day.
Visitors to Millbrook sign in at the blue kiosk next to the lifts.
""",
    "equipment.md": """# Equipment

Every new engineer receives a Tessaract T14 laptop.
Broken laptops go to the help desk in room 3B.
Each desk gets two monitors made by Veltrona.
Headsets are ordered through the portal called GearDesk.
""",
    "money.md": """# Pay and expenses

Salaries are paid on the 27th of each month.
Travel expenses are filed in the app called Ledgerly within 14 days of the trip.
The daily meal allowance on business trips is 38 euros.
The yearly learning budget is 1,200 euros per person.
""",
    "leave.md": """# Leave

Every employee has 29 days of paid vacation per year.
Unused vacation days expire on the 31st of March of the next year.
Parental leave is 20 weeks at full pay.
Sick days are reported to the manager and to the address absence@orchard-robotics.example.
""",
    "people.md": """# People

The head of engineering is Imogen Castellano.
The office manager at Harbor Lane is Rafael Okonkwo.
New starters are paired with a buddy for their first 6 weeks.
The company newsletter is called The Orchard Post and comes out every second Tuesday.
""",
    "security.md": """# Security

Lost badges are reported to the security desk on floor 5.
A replacement badge costs 15 euros.
Passwords are changed every 120 days.
The emergency assembly point is the Linden Square fountain.
""",
}


@dataclass(frozen=True)
class Question:
    text: str
    expect: str  # a phrase the right answer holds; only the handbook gives it

    def answered_by(self, answer: str) -> bool:
        return self.expect.lower() in answer.lower()


QUESTIONS = [
    Question("What time does the Harbor Lane office open?", "7:45"),
    Question("What is the guest wifi network at Harbor Lane called?", "Kestrel"),
    Question("On which day is the Millbrook office closed?", "Friday"),
    Question("Where do visitors to the Millbrook office sign in?", "kiosk"),
    Question("Which laptop does a new engineer receive?", "T14"),
    Question("In which room is the help desk for broken laptops?", "3B"),
    Question("Which company makes the desk monitors?", "Veltrona"),
    Question("What is the portal for ordering headsets called?", "GearDesk"),
    Question("On which day of the month are salaries paid?", "27"),
    Question("In which app are travel expenses filed?", "Ledgerly"),
    Question("How much is the daily meal allowance on business trips?", "38"),
    Question("How large is the yearly learning budget per person?", "1,200"),
    Question("How many days of paid vacation does an employee get per year?", "29"),
    Question("When do unused vacation days expire?", "March"),
    Question("How many weeks of parental leave are there?", "20"),
    Question("To which address are sick days reported?", "absence@orchard-robotics.example"),
    Question("Who is the head of engineering?", "Castellano"),
    Question("Who is the office manager at Harbor Lane?", "Okonkwo"),
    Question("For how many weeks is a new starter paired with a buddy?", "6 weeks"),
    Question("What is the company newsletter called?", "Orchard Post"),
    Question("On which floor is the security desk for lost badges?", "5"),
    Question("How much does a replacement badge cost?", "15"),
    Question("How often are passwords changed?", "120"),
    Question("Where is the emergency assembly point?", "Linden"),
]
