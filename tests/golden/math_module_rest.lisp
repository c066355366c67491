; The rest of LispE's math module: hyperbolic arcs, cbrt/∛, √, erf, gamma functions, exp2, expm1,
; log1p, logb, nearbyint/rint (halves to even), radian/degree, gcd/hcf, and π τ ℯ _tau _phi.
(println (cbrt 64) (∛ -27) (√ 81) (exp2 5) (logb 20) (log1p 0))
(println (asinh 0) (acosh 1) (atanh 0.5))
(println (erf 1) (erfc 1) (tgamma 6) (lgamma 1) (expm1 1))
(println (nearbyint 0.5) (nearbyint 1.5) (rint -2.5) (rint 2.6))
(println (radian 90) (degree (/ π 4)))
(println (gcd 84 36) (hcf 17 5) (gcd 0 9))
(println (= τ (* 2 π)) (= ℯ _e) _phi)
(println (maybe (atanh 1) "atanh: outside (-1 1)") (maybe (tgamma 0) "tgamma: pole at 0"))
