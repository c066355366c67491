; Strings inside containers print quoted with \n \t \r \" \\ escaped (LispE's ujsonstring), so a
; list stays on one line and its printed form reads back; at top level print shows them raw.
(setq s "a\nb")
(println (list s))
(println (list "tab\there" "cr\r" "quote\"" "back\\slash" "plain"))
(println {"k":"line1\nline2"})
(println '("nested" ("x\ny")))
(println s)
(println (size s) (size (string (list s))))
(println (eq (car (eval (string (list 'quote (list "a\n\"b\"\t\\"))))) "a\n\"b\"\t\\"))
(println (string (list "é\n")))
