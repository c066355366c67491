#!/usr/bin/env lispe
; the first line above is skipped, and so is any #! line
(println "one")
#! this line is skipped too
(println (list '#tag "two"))   #! and this end of line
(setq #x 5)
(println (+ #x 1))
