; an atom used as a dictionary key reads (and writes) the key of its name
(setq moves {"north": '(-1 0) "east": '(0 1)})
(println (key moves 'east) (@ moves 'north) (key moves 'west))
(set@ moves 'south '(1 0))
(println (key moves "south") (in moves 'south))
(setq where '(1 1))
(println (zipwith '+ where (key moves (atom "east"))))
