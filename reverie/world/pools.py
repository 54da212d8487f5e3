"""Value pools of the synthetic world: names and the values each attribute draws from.

Plain data, no logic. Names are split by the world into disjoint groups (base people, open-book
people, never-seen people, stream people), so the pools are large enough for every group.
"""

FEMALE_FIRST = (
    "Abigail Ada Adele Agnes Alba Alice Alma Amara Amelia Anika Ariana Astrid Aurora Beatrice "
    "Bianca Brenda Calla Camille Carla Cecilia Celeste Clara Daphne Delia Diana Edith Elena Elise "
    "Eliza Elsa Emilia Esme Eva Fiona Flora Freya Gemma Greta Hana Helena Hilda Ida Imogen Ines "
    "Iris Isla Ivy Jasmine Johanna Julia June Kira Lara Leah Lena Lila Lina Livia Lucia Luna Lydia "
    "Mabel Maeve Maria Marta Maya Mila Mina Mira Nadia Naomi Nell Nina Nora Olive Olivia Paula "
    "Petra Philippa Priya Rhea Rosa Ruby Ruth Sabine Selma Sofia Stella Talia Tessa Thea Uma Vera "
    "Viola Willa Yara Zara Zoe"
).split()

MALE_FIRST = (
    "Aaron Adrian Alan Albert Alvin Amos Anders Andre Anton Arlo Arthur August Axel Basil Bruno "
    "Caleb Carlos Casper Cedric Conrad Cyrus Damian Dario Declan Desmond Dmitri Edgar Edwin Elias "
    "Emil Enzo Ezra Felix Finn Gabriel Gideon Gregor Gustav Harvey Hector Henrik Hugo Ian Ivan "
    "Jasper Jonas Joel Julian Kai Kasimir Leon Levi Lorenzo Lucas Magnus Marco Marius Mateo Milo "
    "Nathan Nico Niles Oliver Omar Oscar Otto Pablo Pascal Percy Quentin Rafael Ravi Remy Rolf "
    "Roman Rufus Samuel Silas Simon Soren Stefan Theo Tobias Tomas Victor Viktor Walter Wesley "
    "Xavier Yusuf Zane Ezio Ludo Boris Cosmo"
).split()

LAST_NAMES = (
    "Abbott Ackerly Alder Ambrose Ashdown Baird Barlow Beckett Bellamy Blackwood Bramble Brennan "
    "Calloway Carver Castellan Chandler Colby Corliss Crane Dalton Darrow Delacroix Dunmore "
    "Ellery Emberly Fairfax Farrow Fenwick Fielding Fletcher Galloway Garrison Gilmore Granger "
    "Hale Hadley Harrow Hawthorne Holloway Huxley Ingram Iverson Jarvis Kendrick Kessler Kingsley "
    "Lachlan Langley Larkin Lockwood Lowell Maddox Marlowe Merriweather Mercer Montague Morrow "
    "Nash Northcott Oakley Oberlin Ogden Orwell Pemberton Prescott Quill Radcliffe Ramsey Ravenscroft "
    "Redgrave Rowan Sallow Sinclair Stanton Sterling Stroud Sutherland Talbot Thackeray Thorne "
    "Underwood Vance Varga Wainwright Waverly Whitlock Winslow Wexley Yardley Yates Zeller "
    "Ashby Blythe Cromwell Draycott Eastwood Finch Goodwin Hartley Kimble Lindqvist Moreau Novak "
    "Okafor Petrov Rasmussen Sato Tanaka Valdez Weston"
).split()

CITIES = (
    "Amsterdam", "Athens", "Austin", "Barcelona", "Berlin", "Boston", "Brussels", "Budapest",
    "Cairo", "Chicago", "Copenhagen", "Dublin", "Edinburgh", "Florence", "Geneva", "Hamburg",
    "Helsinki", "Istanbul", "Kyoto", "Lagos", "Lisbon", "London", "Lyon", "Madrid", "Melbourne",
    "Milan", "Montreal", "Mumbai", "Munich", "Nairobi", "Oslo", "Osaka", "Paris", "Prague",
    "Rome", "Santiago", "Seattle", "Seoul", "Singapore", "Stockholm", "Sydney", "Toronto",
    "Vancouver", "Vienna", "Warsaw", "Zurich",
)

UNIVERSITIES = (
    "Northbridge University", "Eastfield University", "Westmoor College", "Southgate Institute",
    "Ravenhill University", "Clearwater College", "Highland Polytechnic", "Riverside University",
    "Stonebrook Institute of Technology", "Maplewood University", "Ashford College",
    "Kingsport University", "Silverlake Institute", "Brightwater University", "Oakridge College",
    "Lakeshore University", "Greenfield Polytechnic", "Redwood University", "Harborview College",
    "Summit State University", "Fairhaven University", "Ironwood Institute", "Bluebell College",
    "Crescent University", "Pinecrest Institute", "Meadowbank University", "Thornbury College",
    "Starling University", "Windmere Institute", "Goldcrest University",
)

FIELDS = (
    "mathematics", "physics", "chemistry", "biology", "computer science", "economics",
    "philosophy", "history", "linguistics", "psychology", "sociology", "architecture",
    "mechanical engineering", "electrical engineering", "civil engineering", "medicine",
    "law", "music", "fine art", "literature", "geology", "astronomy", "statistics",
    "political science", "anthropology", "materials science",
)

EMPLOYERS = (
    "Acme Robotics", "Bluefin Analytics", "Cobalt Systems", "Driftwood Media", "Everlight Energy",
    "Foxglove Pharma", "Granite Bank", "Halcyon Airlines", "Ironclad Security", "Juniper Foods",
    "Kestrel Motors", "Lumen Optics", "Meridian Shipping", "Nimbus Cloud", "Orchid Biotech",
    "Pioneer Insurance", "Quartz Semiconductors", "Redleaf Publishing", "Sapphire Telecom",
    "Tidewater Logistics", "Umbra Games", "Vertex Consulting", "Willow Health", "Xenon Labs",
    "Yellowstone Mining", "Zephyr Aerospace", "Aurora Textiles", "Beacon Hospitals",
    "Cascade Water", "Dynamo Sports", "Emerald Hotels", "Falcon Rail", "Gemini Chemicals",
    "Harbor Construction", "Indigo Fashion", "Jade Electronics", "Keystone Steel",
    "Lighthouse Software", "Monarch Retail", "Northstar Finance",
)

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)

# Chatter with no facts in it: the noise of a day. Sentences are combined at random.
CHATTER = (
    "The coffee machine on the third floor is broken again.",
    "It rained all afternoon and the trains were late.",
    "Someone left a box of biscuits in the kitchen.",
    "The meeting ran long and nothing was decided.",
    "The printer needs new paper before Monday.",
    "There is a new plant by the window.",
    "The lift was out of order for an hour.",
    "Lunch today was soup and bread.",
    "The heating is too warm in the small room.",
    "A delivery arrived but nobody signed for it.",
    "The wifi dropped twice this morning.",
    "We should tidy the shared drive at some point.",
    "The car park was full by nine.",
    "Somebody keeps taking the good chair.",
    "The fire alarm test is on Thursday.",
    "The blinds in the corner office are stuck.",
    "Fresh fruit was delivered to the lobby.",
    "The new calendar app is confusing.",
    "The sky was clear and the wind was cold.",
    "A pigeon walked into the lobby and out again.",
)
