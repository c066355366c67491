; strategy_top_p.lisp -- the "Top-p (nucleus) sampling" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume
; (`generator`, `input_tokens`) and print the results.

(use 'lispe_torch)

; [added] a generator on the embedded model and a prompt in its chat format
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_chat '(("user" "Describe the sea in one sentence.")))))

; Configure Top-P  
(torch_set_generation_params generator 50 0.9 50 0.92)
(setq topp_result (torch_generate generator input_tokens "top_p"))

; [added]
(println "Generator:" generator)
(println "Top-P answer:" (tokenizer_decode (tensor_slice topp_result 0 (size input_tokens) (size topp_result))))
(torch_generator_config generator {"seed":42})
(setq a (torch_generate generator input_tokens "top_p"))
(setq b (torch_generate generator input_tokens "top_p"))
(println "With a seed, the same sample twice:" (= (tensor_to_list a) (tensor_to_list b)))
