(println (floor 3.7) (floor -3.2) (ceil 3.2) (ceil -3.7) (trunc -3.7) (trunc 3.7))
(println (round 2.5) (round -2.5) (round 2.4) (round 3.14159 2) (round 7))
(println (type (floor 3.7)) (floor 5))
