; rgx: a {...} choice may hold sequences [...] (and other sub-expressions) beside characters, as in
; LispE's automaton; (...) is an optional part
(setq program "xmul(2,4)&do()don't()mul(5,5)+mul(11,8)")
(println (rgx_findall (rgx "{[don't%(%)][mul%(%d+,%d+%)][do%(%)]}") program))
(println (rgx_findall (rgx "{[ab][cd]}") "xxabyycdab"))
(println (rgx_findall (rgx "{[ab]x}+") "abxabq"))
(println (rgx_findall (rgx "a(b)c") "ac abc abbc"))
(println (rgx_findall (rgx "{%d[x%d]}+") "1x23 y4"))
(println (rgx "{[ab]c}" "ab") (rgx "{[ab]c}" "c") (rgx "{[ab]c}" "abc"))
(rgx "a(bc")
