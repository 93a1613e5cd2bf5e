// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title seqnet settlement: custody, committee checkpoints, withdrawals, escape hatch.
/// @notice Byte formats (leaves, EIP-712 types) are fixed by docs/PROTOCOL.md; the design
/// (storage layout, errors, escape procedure) is in docs/SETTLEMENT.md.
contract Settlement is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// An ERC-2098 compact signature: `vs` is `s` with the recovery bit in its top bit.
    struct Signature {
        bytes32 r;
        bytes32 vs;
    }

    struct TokenConfig {
        address token; // address(0) is ETH
        uint64 unit; // on-chain base units per engine unit (PROTOCOL.md §1)
    }

    struct TokenInfo {
        uint64 unit; // 0 = not listed
        uint16 index;
    }

    /// Everything a checkpoint, a deposit or a freeze reads and writes, in one slot.
    struct Header {
        uint64 sequence; // last accepted checkpoint; 0 = none yet
        uint48 lastDepositId; // lastDepositId of the last accepted checkpoint
        uint48 depositCount; // deposits made; ids run 1..depositCount
        uint40 lastCheckpointAt; // timestamp of the last checkpoint (or of deployment)
        uint32 epoch; // current committee epoch
        uint16 threshold; // signatures the current committee needs
        bool frozen;
    }

    bytes32 public constant CHECKPOINT_TYPEHASH = keccak256(
        "Checkpoint(uint64 epoch,uint64 sequence,bytes32 stateRoot,bytes32 withdrawalsRoot,uint64 lastDepositId)"
    );
    bytes32 public constant ROTATION_TYPEHASH =
        keccak256("Rotation(uint64 epoch,address[] members,uint16 threshold)");
    uint256 public constant MAX_MEMBERS = 1024;
    uint256 public constant MAX_TOKENS = 65536;
    /// stateRoot before the first checkpoint: the root of no tree (no proof reaches it), and
    /// non-zero so that the first checkpoint overwrites a live slot (5k gas, not 22k).
    bytes32 public constant NO_STATE_ROOT = bytes32(uint256(1));

    uint256 public immutable escapeDelay;

    Header private _header;
    /// keccak256(abi.encodePacked(members)) of the current epoch's sorted member list.
    bytes32 public committeeHash;
    /// State root of the last accepted checkpoint (NO_STATE_ROOT before the first): what
    /// exits prove against.
    bytes32 public stateRoot;
    /// Withdrawals root per accepted checkpoint; unset when the checkpoint had none.
    mapping(uint64 sequence => bytes32 root) public withdrawalsRoots;
    mapping(uint256 word => uint256 bits) private _claimed;
    /// Packed deposit record: account | tokenIndex << 160 | engineAmount << 176; 0 = none.
    mapping(uint256 depositId => uint256 record) private _deposits;
    mapping(address token => TokenInfo) private _tokens;
    address[] private _tokenList;
    mapping(address account => mapping(address token => bool)) public exited;

    event TokenListed(address indexed token, uint16 index, uint64 unit);
    event CommitteeRotated(uint32 indexed epoch, bytes32 committeeHash, uint16 threshold, address[] members);
    event Deposit(uint64 indexed depositId, address indexed account, address indexed token, uint256 amount);
    event CheckpointAccepted(
        uint64 indexed sequence,
        uint32 indexed epoch,
        bytes32 stateRoot,
        bytes32 withdrawalsRoot,
        uint64 lastDepositId
    );
    event WithdrawalClaimed(
        uint256 indexed withdrawalId, uint64 indexed sequence, address indexed account, address token, uint256 amount
    );
    event Frozen(uint64 sequence, bytes32 stateRoot, uint64 lastDepositId);
    event Exited(address indexed account, address indexed token, uint256 amount);
    event DepositReclaimed(uint64 indexed depositId, address indexed account, address indexed token, uint256 amount);

    // Configuration.
    error EmptyCommittee();
    error CommitteeTooLarge(uint256 size, uint256 max);
    error MembersNotSorted(uint256 index);
    error InvalidThreshold(uint256 threshold, uint256 size);
    error InvalidEscapeDelay();
    error InvalidUnit(address token, uint64 unit);
    error DuplicateToken(address token);
    error TooManyTokens();
    // Deposits.
    error TokenNotListed(address token);
    error AmountNotMultipleOfUnit(uint256 amount, uint64 unit);
    error ZeroAmount();
    error AmountTooLarge(uint256 amount);
    // Checkpoints and rotations.
    error ContractFrozen();
    error WrongEpoch(uint64 expected, uint64 got);
    error UnexpectedSequence(uint64 expected, uint64 got);
    error DepositIdBackwards(uint64 last, uint64 got);
    error DepositIdBeyondDeposits(uint64 count, uint64 got);
    error CommitteeMismatch();
    error InsufficientSignatures(uint256 got, uint256 threshold);
    error InvalidSignature(uint256 index);
    error DuplicateSigner(address signer);
    error SignersNotSorted(uint256 index);
    error NotMember(address signer);
    // Withdrawals.
    error UnknownWithdrawalsRoot(uint64 sequence);
    error AlreadyClaimed(uint256 withdrawalId);
    error InvalidProof();
    error EthTransferFailed(address to, uint256 amount);
    // Escape hatch.
    error AlreadyFrozen();
    error EscapeDelayNotElapsed(uint256 availableAt);
    error NotFrozen();
    error AlreadyExited(address account, address token);
    error DepositAlreadyProcessed(uint64 depositId, uint64 lastDepositId);
    error UnknownDeposit(uint64 depositId);
    error DepositAlreadyReclaimed(uint64 depositId);

    constructor(address[] memory members, uint16 threshold, TokenConfig[] memory tokenConfigs, uint256 escapeDelay_)
        EIP712("seqnet", "1")
    {
        if (escapeDelay_ == 0 || escapeDelay_ > type(uint32).max) revert InvalidEscapeDelay();
        if (tokenConfigs.length > MAX_TOKENS) revert TooManyTokens();
        escapeDelay = escapeDelay_;
        for (uint256 i = 0; i < tokenConfigs.length; ++i) {
            TokenConfig memory t = tokenConfigs[i];
            if (!_isPowerOfTen(t.unit)) revert InvalidUnit(t.token, t.unit);
            if (_tokens[t.token].unit != 0) revert DuplicateToken(t.token);
            _tokens[t.token] = TokenInfo({unit: t.unit, index: uint16(i)});
            _tokenList.push(t.token);
            emit TokenListed(t.token, uint16(i), t.unit);
        }
        bytes32 hash = _checkCommittee(members, threshold);
        committeeHash = hash;
        stateRoot = NO_STATE_ROOT;
        _header = Header({
            sequence: 0,
            lastDepositId: 0,
            depositCount: 0,
            lastCheckpointAt: uint40(block.timestamp),
            epoch: 0,
            threshold: threshold,
            frozen: false
        });
        emit CommitteeRotated(0, hash, threshold, members);
    }

    // ---------------------------------------------------------------- deposits

    /// Deposit ETH for msg.sender. msg.value must be a positive multiple of ETH's unit.
    function depositEth() external payable nonReentrant {
        TokenInfo memory t = _listed(address(0));
        if (msg.value % t.unit != 0) revert AmountNotMultipleOfUnit(msg.value, t.unit);
        _recordDeposit(msg.sender, address(0), t, msg.value);
    }

    /// Deposit `amount` of an allow-listed ERC-20 for msg.sender (approve first). The credit
    /// is what the contract actually received, rounded down to the token's unit; the
    /// remainder (only ever non-zero for fee-on-transfer tokens) stays in the contract.
    function depositToken(address token, uint256 amount) external nonReentrant {
        if (token == address(0)) revert TokenNotListed(token);
        TokenInfo memory t = _listed(token);
        if (amount % t.unit != 0) revert AmountNotMultipleOfUnit(amount, t.unit);
        if (amount / t.unit > type(uint64).max) revert AmountTooLarge(amount);
        if (_header.frozen) revert ContractFrozen();
        IERC20 erc20 = IERC20(token);
        uint256 before = erc20.balanceOf(address(this));
        erc20.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = erc20.balanceOf(address(this)) - before;
        _recordDeposit(msg.sender, token, t, received - (received % t.unit));
    }

    function _recordDeposit(address account, address token, TokenInfo memory t, uint256 amount) private {
        Header memory h = _header;
        if (h.frozen) revert ContractFrozen();
        if (amount == 0) revert ZeroAmount();
        uint256 engineAmount = amount / t.unit;
        if (engineAmount > type(uint64).max) revert AmountTooLarge(amount);
        uint64 id = uint64(h.depositCount) + 1;
        h.depositCount = uint48(id);
        _header = h;
        _deposits[id] = uint256(uint160(account)) | (uint256(t.index) << 160) | (engineAmount << 176);
        emit Deposit(id, account, token, amount);
    }

    // ------------------------------------------------------------- checkpoints

    /// Accept checkpoint `sequence` (exactly the next one) signed by at least `threshold`
    /// members of the current epoch's committee. `members` is that committee's sorted
    /// member list (checked against its stored hash); `signatures` are sorted by signer.
    function submitCheckpoint(
        uint64 epoch,
        uint64 sequence,
        bytes32 stateRoot_,
        bytes32 withdrawalsRoot,
        uint64 lastDepositId,
        address[] calldata members,
        Signature[] calldata signatures
    ) external {
        Header memory h = _header;
        if (h.frozen) revert ContractFrozen();
        if (epoch != h.epoch) revert WrongEpoch(h.epoch, epoch);
        if (sequence != h.sequence + 1) revert UnexpectedSequence(h.sequence + 1, sequence);
        if (lastDepositId < h.lastDepositId) revert DepositIdBackwards(h.lastDepositId, lastDepositId);
        if (lastDepositId > h.depositCount) revert DepositIdBeyondDeposits(h.depositCount, lastDepositId);
        bytes32 structHash =
            keccak256(abi.encode(CHECKPOINT_TYPEHASH, epoch, sequence, stateRoot_, withdrawalsRoot, lastDepositId));
        _verifyQuorum(_hashTypedDataV4(structHash), h.threshold, members, signatures);

        h.sequence = sequence;
        h.lastDepositId = uint48(lastDepositId);
        h.lastCheckpointAt = uint40(block.timestamp);
        _header = h;
        stateRoot = stateRoot_;
        // An empty withdrawals tree has the zero root, which no proof can reach: skip the store.
        if (withdrawalsRoot != bytes32(0)) withdrawalsRoots[sequence] = withdrawalsRoot;
        emit CheckpointAccepted(sequence, h.epoch, stateRoot_, withdrawalsRoot, lastDepositId);
    }

    /// Install the next epoch's committee, signed by the current committee's threshold.
    function rotateCommittee(
        address[] calldata newMembers,
        uint16 newThreshold,
        address[] calldata members,
        Signature[] calldata signatures
    ) external {
        Header memory h = _header;
        if (h.frozen) revert ContractFrozen();
        uint32 newEpoch = h.epoch + 1;
        bytes32 newHash = _checkCommittee(newMembers, newThreshold);
        bytes32 structHash = keccak256(abi.encode(ROTATION_TYPEHASH, uint64(newEpoch), newHash, newThreshold));
        _verifyQuorum(_hashTypedDataV4(structHash), h.threshold, members, signatures);

        h.epoch = newEpoch;
        h.threshold = newThreshold;
        _header = h;
        committeeHash = newHash;
        emit CommitteeRotated(newEpoch, newHash, newThreshold, newMembers);
    }

    // ------------------------------------------------------------- withdrawals

    /// Pay withdrawal `withdrawalId` to `account`, proven against checkpoint `sequence`'s
    /// withdrawals root. Anyone may submit it; the funds always go to `account`.
    function claimWithdrawal(
        uint64 sequence,
        uint256 withdrawalId,
        address account,
        address token,
        uint256 amount,
        bytes32[] calldata proof
    ) external nonReentrant {
        bytes32 root = withdrawalsRoots[sequence];
        if (root == bytes32(0)) revert UnknownWithdrawalsRoot(sequence);
        uint256 word = withdrawalId >> 8;
        uint256 bit = 1 << (withdrawalId & 0xff);
        uint256 bits = _claimed[word];
        if (bits & bit != 0) revert AlreadyClaimed(withdrawalId);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(withdrawalId, account, token, amount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert InvalidProof();

        _claimed[word] = bits | bit;
        emit WithdrawalClaimed(withdrawalId, sequence, account, token, amount);
        _pay(token, account, amount);
    }

    // ------------------------------------------------------------- escape hatch

    /// Anyone may freeze the contract once no checkpoint was accepted for `escapeDelay`
    /// seconds. Frozen is final: no deposits, checkpoints or rotations; exits and
    /// reclaims open; withdrawals of accepted checkpoints stay claimable.
    function freeze() external {
        Header memory h = _header;
        if (h.frozen) revert AlreadyFrozen();
        uint256 availableAt = uint256(h.lastCheckpointAt) + escapeDelay;
        if (block.timestamp < availableAt) revert EscapeDelayNotElapsed(availableAt);
        h.frozen = true;
        _header = h;
        emit Frozen(h.sequence, stateRoot, h.lastDepositId);
    }

    /// After freeze: pay `account` its `balance` of `token` proven against the last
    /// accepted state root, once per (account, token). Anyone may submit it.
    function exit(address account, address token, uint256 balance, bytes32[] calldata proof)
        external
        nonReentrant
    {
        if (!_header.frozen) revert NotFrozen();
        if (exited[account][token]) revert AlreadyExited(account, token);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, token, balance))));
        if (!MerkleProof.verifyCalldata(proof, stateRoot, leaf)) revert InvalidProof();

        exited[account][token] = true;
        emit Exited(account, token, balance);
        if (balance != 0) _pay(token, account, balance);
    }

    /// After freeze: return a deposit the last checkpoint did not include to its depositor.
    function reclaimDeposit(uint64 depositId) external nonReentrant {
        Header memory h = _header;
        if (!h.frozen) revert NotFrozen();
        if (depositId <= h.lastDepositId) revert DepositAlreadyProcessed(depositId, h.lastDepositId);
        if (depositId > h.depositCount) revert UnknownDeposit(depositId);
        uint256 record = _deposits[depositId];
        if (record == 0) revert DepositAlreadyReclaimed(depositId);
        (address account, address token, uint256 amount) = _decodeDeposit(record);

        delete _deposits[depositId];
        emit DepositReclaimed(depositId, account, token, amount);
        _pay(token, account, amount);
    }

    // ------------------------------------------------------------------- views

    function header() external view returns (Header memory) {
        return _header;
    }

    function tokens() external view returns (address[] memory) {
        return _tokenList;
    }

    function tokenUnit(address token) external view returns (uint64) {
        return _tokens[token].unit;
    }

    function isClaimed(uint256 withdrawalId) external view returns (bool) {
        return _claimed[withdrawalId >> 8] & (1 << (withdrawalId & 0xff)) != 0;
    }

    /// (account, token, amount in base units); all zero once reclaimed or if unknown.
    function depositRecord(uint64 depositId) external view returns (address, address, uint256) {
        uint256 record = _deposits[depositId];
        if (record == 0) return (address(0), address(0), 0);
        return _decodeDeposit(record);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----------------------------------------------------------------- private

    function _listed(address token) private view returns (TokenInfo memory t) {
        t = _tokens[token];
        if (t.unit == 0) revert TokenNotListed(token);
    }

    function _decodeDeposit(uint256 record) private view returns (address account, address token, uint256 amount) {
        account = address(uint160(record));
        token = _tokenList[uint16(record >> 160)];
        amount = (record >> 176) * _tokens[token].unit;
    }

    function _checkCommittee(address[] memory members, uint16 threshold) private pure returns (bytes32) {
        uint256 n = members.length;
        if (n == 0) revert EmptyCommittee();
        if (n > MAX_MEMBERS) revert CommitteeTooLarge(n, MAX_MEMBERS);
        if (threshold == 0 || threshold > n) revert InvalidThreshold(threshold, n);
        address prev = address(0);
        for (uint256 i = 0; i < n; ++i) {
            // Strictly ascending also rules out duplicates and the zero address.
            if (members[i] <= prev) revert MembersNotSorted(i);
            prev = members[i];
        }
        return keccak256(abi.encodePacked(members));
    }

    /// Reverts unless `signatures` over `digest` come from at least `threshold` distinct
    /// members of the current committee, in strictly ascending signer order. The member
    /// list comes from calldata and is checked against the stored hash: cheaper than a
    /// storage lookup per signer (see docs/SETTLEMENT.md). Both lists are sorted, so one
    /// merge walk checks membership.
    function _verifyQuorum(
        bytes32 digest,
        uint256 threshold,
        address[] calldata members,
        Signature[] calldata signatures
    ) private view {
        if (keccak256(abi.encodePacked(members)) != committeeHash) revert CommitteeMismatch();
        uint256 k = signatures.length;
        if (k < threshold) revert InsufficientSignatures(k, threshold);
        uint256 n = members.length;
        uint256 j = 0;
        address prev = address(0);
        for (uint256 i = 0; i < k; ++i) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signatures[i].r, signatures[i].vs);
            if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(i);
            if (signer == prev) revert DuplicateSigner(signer);
            if (signer < prev) revert SignersNotSorted(i);
            while (j < n && members[j] < signer) ++j;
            if (j == n || members[j] != signer) revert NotMember(signer);
            prev = signer;
            ++j;
        }
    }

    function _pay(address token, address to, uint256 amount) private {
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert EthTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    function _isPowerOfTen(uint64 x) private pure returns (bool) {
        if (x == 0) return false;
        while (x % 10 == 0) x /= 10;
        return x == 1;
    }
}
