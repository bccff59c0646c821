// Behavioural simulation model of the Lattice ECP5 MULT18X18D, for Tessera's testbenches only.
//
// Written from Lattice FPGA-TN-02205 (ECP5 and ECP5-5G sysDSP Usage Guide). It models the subset
// that rtl/multiplier.py uses: 18x18 signed/unsigned multiply, optional input A/B registers,
// pipeline register and output register, each clocked by CLK0 with clock enable CE0 and
// synchronous reset RST0 (RESETMODE "SYNC"). Cascade, shift-in (SRIA/SRIB), C input and the
// other clocks are not modelled. Yosys ships no simulation model of this primitive.
`default_nettype none
module MULT18X18D(
    input wire A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0, B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0, C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output wire P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
    output wire SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg  [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg  sa_reg = 1'b0, sb_reg = 1'b0;
    always @(posedge CLK0) begin
        if (RST0) begin a_reg <= 18'd0; sa_reg <= 1'b0; end
        else if (CE0) begin a_reg <= a_in; sa_reg <= SIGNEDA; end
        if (RST0) begin b_reg <= 18'd0; sb_reg <= 1'b0; end
        else if (CE0) begin b_reg <= b_in; sb_reg <= SIGNEDB; end
    end
    wire [17:0] a = (REG_INPUTA_CLK == "NONE") ? a_in : a_reg;
    wire [17:0] b = (REG_INPUTB_CLK == "NONE") ? b_in : b_reg;
    wire sa = (REG_INPUTA_CLK == "NONE") ? SIGNEDA : sa_reg;
    wire sb = (REG_INPUTB_CLK == "NONE") ? SIGNEDB : sb_reg;
    wire signed [35:0] a_ext = sa ? {{18{a[17]}}, a} : {18'd0, a};
    wire signed [35:0] b_ext = sb ? {{18{b[17]}}, b} : {18'd0, b};
    wire [35:0] product = a_ext * b_ext;
    reg  [35:0] pipe_reg = 36'd0, out_reg = 36'd0;
    wire [35:0] piped = (REG_PIPELINE_CLK == "NONE") ? product : pipe_reg;
    always @(posedge CLK0) begin
        if (RST0) pipe_reg <= 36'd0; else if (CE0) pipe_reg <= product;
        if (RST0) out_reg <= 36'd0; else if (CE0) out_reg <= piped;
    end
    wire [35:0] p = (REG_OUTPUT_CLK == "NONE") ? piped : out_reg;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
    assign SIGNEDP = sa | sb;
endmodule
