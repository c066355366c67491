; segment's second argument is LispE's decimal `point`: 0 ".", 1 ",", 2 both (it was read as
; "keep the blanks", so 1 gave blank tokens and a wrong number split).
(setq txt "pay 3.75 or 3,75 now")
(println (segment txt))
(println (segment txt 0))
(println (segment txt 1))
(println (segment txt 2))
(println (segment_e "7,5 x" 1))
(println (segment_e "7.5 x" 0))
(println (maybe (segment txt "comma") "point must be 0, 1 or 2"))
