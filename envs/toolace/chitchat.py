"""Requests no catalog tool can serve, each with the verb phrase a refusal uses.

The last ``N_TEST`` entries are reserved for the test split.
"""

from __future__ import annotations

CHITCHAT: tuple[tuple[str, str], ...] = (
    ("Write a short poem about the ocean.", "write poems"),
    ("Tell me a joke about programmers.", "tell jokes"),
    ("What's the meaning of life?", "answer philosophical questions"),
    ("Can you recommend a good book to read this summer?", "recommend books"),
    ("Explain quantum computing in simple terms.", "explain scientific topics"),
    ("Help me write a cover letter for a marketing job.", "write cover letters"),
    ("Play some relaxing jazz music.", "play music"),
    ("Turn on the living room lights.", "control smart-home devices"),
    ("Call a taxi to take me to the airport.", "book taxis"),
    ("Set my phone to silent mode.", "change phone settings"),
    ("Summarize the plot of Hamlet.", "summarise books"),
    ("What's the latest news headline?", "fetch news headlines"),
    ("Draw a picture of a cat wearing a hat.", "create images"),
    ("Adjust the thermostat to 21 degrees.", "control the thermostat"),
    ("Transfer 200 dollars from my checking account to my savings.", "make bank transfers"),
    ("Rent a car in Madrid for next weekend.", "rent cars"),
    ("Who painted the Mona Lisa?", "answer art history questions"),
    ("Write a Python function that reverses a linked list.", "write code"),
    ("Give me some tips for a job interview.", "give career advice"),
    ("What should I name my new puppy?", "suggest pet names"),
    ("Order a pepperoni pizza for delivery.", "order food delivery"),
    ("Lock the front door.", "control door locks"),
    ("Cancel my gym membership.", "manage memberships"),
    ("Find me a date for Friday night.", "arrange dates"),
    ("Translate this whole contract into Japanese.", "translate documents"),
    ("Diagnose why my car makes a clicking noise.", "diagnose car problems"),
    ("Compose a birthday song for my sister.", "compose songs"),
    ("Stream the latest episode of my favourite show.", "stream videos"),
    ("Renew my library books.", "renew library loans"),
    ("Check my credit score.", "check credit scores"),
)
N_TEST = 8
