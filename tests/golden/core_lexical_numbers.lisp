(println 12 -12 +3 (- 10 2) (type 12) (type 1.5) (type -0.5))
(println 0xFF 0x10 0b1011 -0x1 1.5E3 2e-4 .5)
(println (type 1e3) (+ 0xF 0b1))
(println 12abc (type '12abc) (type '1+))
