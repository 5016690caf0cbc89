"""Word pools for labels and values. ``base.split_pool`` splits each pool by a fixed hash
into a training part and a held-out part, so held-out content never appears in training."""

NOUNS = tuple("""
apple anchor arrow badge basket beacon bell bicycle blanket bottle bridge brush bucket
button cabin camera candle canvas carpet castle chair clock cloud compass cookie copper
cottage crayon crystal curtain cushion desk diamond dolphin drawer drum eagle engine
feather fence flag flower forest fountain garden glove guitar hammer harbor helmet honey
island jacket kettle kite ladder lamp lantern lemon letter library lighthouse magnet
mango map marble meadow mirror mountain needle notebook ocean orange orchard paddle
panda paper parrot pencil pepper piano pillow planet pocket pumpkin puzzle quilt rabbit
radio rainbow ribbon river rocket saddle sail scarf shell shovel silver snow spoon
squirrel stamp star stone sugar sunflower table teapot ticket tiger timber tomato torch
tower train tulip umbrella valley violin wagon wallet window winter wizard yogurt zebra
""".split())

NAMES = tuple("""
Ada Alma Arlo Basil Bea Cara Cleo Dara Dev Eli Ember Esme Finn Flora Gus Hana Hugo Ida
Ines Ivo Jade Joel Juno Kai Kira Lars Lena Leo Lila Luca Mae Malik Mina Nell Nico Nora
Omar Opal Otis Pia Quin Raya Remy Rosa Rufus Sage Sami Sena Theo Tova Ugo Una Vera Vik
Wren Xena Yara Yuri Zane Zoe Ansel Bruno Celia Dorian Elsa Felix Greta Hector Iris
Jonas Kasper Lotte Milo Nadia Oskar Petra Quentin Rhea Silas Talia Ulla Viggo Willa
""".split())

COLORS = tuple("""
red orange yellow green blue purple pink brown black white gray teal navy maroon olive
lime cyan magenta gold silver beige coral crimson indigo ivory khaki lavender mint
peach plum salmon tan turquoise violet amber azure bronze cobalt
""".split())

CITIES = tuple("""
Oslo Lima Rome Cairo Quito Perth Dakar Hanoi Lyon Porto Riga Sofia Tunis Kyoto Delhi
Bern Minsk Accra Baku Doha Kiev Lagos Malmo Nice Osaka Pune Seoul Tokyo Turin Vigo
Zagreb Graz Brno Cork Gent Kobe Lille Malaga Nantes Split Tartu Varna Basel Bergen
""".split())

VERBS = tuple("""
open close save print export import share rename delete archive refresh sync upload
download copy paste undo redo zoom rotate crop filter sort group merge split lock
unlock pin mute publish preview duplicate
""".split())
