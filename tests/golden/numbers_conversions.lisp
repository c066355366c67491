(println (integer "42") (integer 3.9) (integer -3.9) (integer "0xFF") (integer " 12 ") (integer "2.5"))
(println (float 3) (type (float 3)) (float "2.5") (number "2.5") (type (number 1)) (number 7))
